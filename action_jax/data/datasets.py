"""MMAction2's annotation list files: ``VideoDataset`` and ``RawframeDataset``.

Each dataset parses its list file once into ``data_list`` and returns, per
index, a fresh results dict with MMAction2 1.2.0's keys, ready for the
transforms. Malformed lines raise ``ListFileError`` (a ``ValueError``) naming the file and
line.
"""
from __future__ import annotations

import copy
import operator
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from action_jax.registry import lookup
from action_jax.user_errors import UserError

__all__ = ['DATASETS', 'ListFileError', 'RawframeDataset', 'VideoDataset', 'build_dataset']

PathPrefix = str | os.PathLike | Mapping[str, Any] | None


class ListFileError(UserError, ValueError):
    """A list file line that cannot be used, named by file and line: the CLIs print it as one
    line."""


class _LineError(ValueError):
    """A malformed annotation line; re-raised with file and line number."""


def _to_int(token: str, what: str) -> int:
    """Parse a non-negative integer field of an annotation line."""
    try:
        value = int(token)
    except ValueError:
        raise _LineError(f'{what} {token!r} is not an integer') from None
    if value < 0:
        raise _LineError(f'{what} {value} is negative')
    return value


def _decode(raw: bytes) -> str:
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError as err:
        raise _LineError(f'invalid UTF-8 ({err.reason} at byte {err.start})') from None


class _ListFileDataset:
    """Shared parsing, indexing and label handling of the list-file datasets.

    Subclasses set ``_prefix_key`` (the ``data_prefix`` dict key MMAction2
    uses) and implement ``_parse_fields``.
    """

    _prefix_key: str

    def __init__(self, ann_file: str | os.PathLike, data_prefix: PathPrefix,
                 multi_class: bool, num_classes: int | None,
                 start_index: int, modality: str, test_mode: bool) -> None:
        if num_classes is not None and num_classes < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        if multi_class and num_classes is None:
            raise ValueError('multi_class=True needs num_classes (the length '
                             'of the multi-hot label)')
        self.ann_file = os.fspath(ann_file)
        self.data_prefix = {self._prefix_key: self._prefix(data_prefix)}
        self.multi_class = multi_class
        self.num_classes = num_classes
        self.start_index = start_index
        self.modality = modality
        self.test_mode = test_mode
        self.data_list = self._load()

    def _prefix(self, data_prefix: PathPrefix) -> str | None:
        """The directory prepended to every path, from any accepted form."""
        if isinstance(data_prefix, Mapping):
            if self._prefix_key not in data_prefix:
                raise ValueError(f'data_prefix needs the key '
                                 f'{self._prefix_key!r}, got {dict(data_prefix)}')
            data_prefix = data_prefix[self._prefix_key]
        return None if data_prefix is None else os.fspath(data_prefix)

    def _join(self, path: str) -> str:
        prefix = self.data_prefix[self._prefix_key]
        return os.path.join(prefix, path) if prefix else path

    def _split(self, line: str) -> list[str]:
        """The fields of a non-blank line."""
        return line.split()

    def _load(self) -> list[dict]:
        if not os.path.isfile(self.ann_file):
            raise FileNotFoundError(f'annotation file not found: {self.ann_file}')
        data_list = []
        # Bytes decoded line by line, so that invalid UTF-8 is reported with its line.
        with open(self.ann_file, 'rb') as f:
            for line_no, raw in enumerate(f, start=1):
                try:
                    line = _decode(raw)
                    if not line.strip():
                        continue
                    data_list.append(self._parse_fields(self._split(line)))
                except _LineError as err:
                    text = raw.decode('utf-8', 'replace').strip()
                    raise ListFileError(f'{self.ann_file}, line {line_no}: {err}: '
                                        f'{text!r}') from None
        return data_list

    def _parse_fields(self, fields: list[str]) -> dict:
        """The stored info of one line, from its fields."""
        raise NotImplementedError

    def _parse_label(self, tokens: list[str]) -> int | list[int]:
        """A class index, or the list of them for ``multi_class``."""
        labels = [_to_int(token, 'label') for token in tokens]
        if self.num_classes is not None:
            for label in labels:
                if label >= self.num_classes:
                    raise _LineError(f'label {label} is out of range for '
                                     f'num_classes={self.num_classes}')
        if self.multi_class:
            if not labels and not self.test_mode:
                raise _LineError('missing label')
            return labels
        if not labels:
            if not self.test_mode:
                raise _LineError('missing label')
            # MMAction2's placeholder label for unlabelled inference lists.
            return -1
        if len(labels) > 1:
            raise _LineError(f'{len(labels)} labels on a single-label line '
                             '(multi_class=False)')
        return labels[0]

    def _results(self, info: dict, sample_idx: int) -> dict:
        """A fresh results dict for one sample (MMAction2's get_data_info)."""
        results = copy.deepcopy(info)
        results.update(sample_idx=sample_idx, modality=self.modality,
                       start_index=self.start_index)
        if self.multi_class:
            multi_hot = np.zeros(self.num_classes, dtype=np.float32)
            multi_hot[results['label']] = 1.
            results['label'] = multi_hot
        return results

    def __len__(self) -> int:
        return len(self.data_list)

    def __getitem__(self, idx: int) -> dict:
        idx = operator.index(idx)
        info = self.data_list[idx]
        return self._results(info, idx if idx >= 0 else len(self) + idx)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(ann_file={self.ann_file!r}, '
                f'num_samples={len(self)})')


class VideoDataset(_ListFileDataset):
    """Video files listed as ``path label`` or, multi-label, ``path l1 l2 ...``.

    Results keys: ``filename``, ``label`` (int, or a float32 multi-hot vector
    of ``num_classes`` with ``multi_class``), ``sample_idx``, ``modality``,
    ``start_index``.

    Args:
        ann_file: the list file.
        data_prefix: directory of the videos: a path, ``dict(video=path)`` as
            in MMAction2's configs, or None.
        multi_class: multi-label lines, labels as multi-hot vectors.
        num_classes: number of classes; needed by ``multi_class``, and labels
            are checked against it when given.
        start_index: index of the first frame (0 for decoded videos).
        modality: ``'RGB'`` or ``'Flow'``.
        test_mode: accept lines without a label (label -1, or an all-zero
            multi-hot), as MMAction2 does for inference lists.
        delimiter: field separator; None splits on any whitespace, which reads
            every list MMAction2's default ``' '`` reads. Another separator
            (e.g. ``','``) allows paths with spaces.
    """

    _prefix_key = 'video'

    def __init__(self, ann_file: str | os.PathLike, data_prefix: PathPrefix = None,
                 multi_class: bool = False, num_classes: int | None = None,
                 start_index: int = 0, modality: str = 'RGB',
                 test_mode: bool = False, delimiter: str | None = None) -> None:
        self.delimiter = delimiter
        super().__init__(ann_file, data_prefix, multi_class, num_classes,
                         start_index, modality, test_mode)

    def _split(self, line: str) -> list[str]:
        return [field.strip() for field in line.strip().split(self.delimiter)]

    def _parse_fields(self, fields: list[str]) -> dict:
        return dict(filename=self._join(fields[0]),
                    label=self._parse_label(fields[1:]))


class RawframeDataset(_ListFileDataset):
    """Frame folders listed as ``frame_dir total_frames label [label ...]``.

    With ``with_offset`` the lines are ``frame_dir offset total_frames label
    [label ...]`` (clips of a longer frame folder). Results keys:
    ``frame_dir``, ``total_frames``, ``offset`` (0 without ``with_offset``,
    which is what MMAction2's frame decoding assumes when it is absent),
    ``label``, ``filename_tmpl``, ``sample_idx``, ``modality``,
    ``start_index``.

    Args:
        ann_file: the list file.
        data_prefix: directory of the frame folders: a path,
            ``dict(img=path)`` as in MMAction2's configs, or None.
        filename_tmpl: frame file name template, formatted with the index.
        with_offset: lines carry a start offset before the frame count.
        multi_class, num_classes, modality, test_mode: as in ``VideoDataset``.
        start_index: index of the first frame file (1 for ``img_00001.jpg``).
    """

    _prefix_key = 'img'

    def __init__(self, ann_file: str | os.PathLike, data_prefix: PathPrefix = None,
                 filename_tmpl: str = 'img_{:05}.jpg', with_offset: bool = False,
                 multi_class: bool = False, num_classes: int | None = None,
                 start_index: int = 1, modality: str = 'RGB',
                 test_mode: bool = False) -> None:
        self.filename_tmpl = filename_tmpl
        self.with_offset = with_offset
        super().__init__(ann_file, data_prefix, multi_class, num_classes,
                         start_index, modality, test_mode)

    def _parse_fields(self, fields: list[str]) -> dict:
        names = ('offset', 'total_frames') if self.with_offset else ('total_frames', )
        if len(fields) < 1 + len(names):
            raise _LineError(f'missing {names[len(fields) - 1]}')
        info = dict(frame_dir=self._join(fields[0]), offset=0)
        for name, token in zip(names, fields[1:]):
            info[name] = _to_int(token, name)
        info['label'] = self._parse_label(fields[1 + len(names):])
        return info

    def _results(self, info: dict, sample_idx: int) -> dict:
        results = super()._results(info, sample_idx)
        results['filename_tmpl'] = self.filename_tmpl
        return results


# The whole registry (action_jax/registry.py); LAZY_DATASETS are imported on first use.
DATASETS = {'VideoDataset': VideoDataset, 'RawframeDataset': RawframeDataset}
LAZY_DATASETS = {'ActivityNetDataset': 'action_jax.localization.data',
                 'PackedDataset': 'action_jax.data.packed'}


def build_dataset(cfg: Mapping[str, Any]):
    """A dataset from its config dict; `pipeline` belongs to the loader and is ignored here."""
    kwargs = {k: v for k, v in cfg.items() if k not in ('type', 'pipeline')}
    name = cfg.get('type', 'VideoDataset')
    cls = lookup(DATASETS, LAZY_DATASETS, name, 'dataset', 'dataset')
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f'{name}: {e}') from e
