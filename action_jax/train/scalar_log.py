"""Training scalars, a few clips and the hyper-parameters to TensorBoard; scalars also to
`scalars.jsonl` and the console log.

tensorboardX writes the event files: tensorboard's own EventFileWriter imports all of TensorFlow
on its first write when TensorFlow is installed (seconds, hundreds of MB), and clu's writers
import it with the package.
"""
import json
import math
import os
import re
import time
from typing import Any, Mapping

import numpy as np
from tensorboardX import FileWriter
from tensorboardX import summary as tb_summary


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; values TensorBoard cannot show as numbers become text."""
    flat = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + '.'))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = repr(value)
    return flat


def _tb_tag(tag: str) -> str:
    """tensorboardX's renaming of characters a tag may not hold (AR@1 -> AR_1), done here
    because it logs a line for each renamed value it is given."""
    return re.sub(r'[^-/\w.]', '_', tag)


class ScalarLog:
    """Only the main process writes; the others keep the interface and write nothing."""

    def __init__(self, workdir: str, is_main: bool = True):
        self.events = FileWriter(workdir) if is_main else None
        self.jsonl = os.path.join(workdir, 'scalars.jsonl') if is_main else None

    def write(self, step: int, scalars: Mapping[str, float], epoch: int | None = None) -> None:
        """`epoch` (training records) goes to `scalars.jsonl` only: analyze_logs cal_train_time
        groups the iterations by it; TensorBoard has no use for it as a curve."""
        if self.events is None or not scalars:  # e.g. TEM's evaluation: results, no metric
            return
        values = {k: float(v) for k, v in scalars.items()}
        for tag, value in values.items():
            # A non-finite value is left out of TensorBoard: tensorboardX warns about each one.
            if math.isfinite(value):
                self.events.add_summary(tb_summary.scalar(_tb_tag(tag), value), step)
        record = {'step': step, **({} if epoch is None else {'epoch': epoch}),
                  # Wall-clock time too: analyze_logs cal_train_time measures seconds per step.
                  'time': time.time(), **values}
        with open(self.jsonl, 'a') as f:
            f.write(json.dumps(record) + '\n')

    def images(self, step: int, tag: str, array: np.ndarray) -> None:
        """`array`: uint8 clips (clips, ..., H, W, C); each clip's first frames become one
        row of a strip, so a glance shows what the model is fed (crops, flips, contrast)."""
        if self.events is None:
            return
        array = np.asarray(array)
        clips = array.reshape(array.shape[0], -1, *array.shape[-3:])[:, :8]
        strip = np.concatenate(np.concatenate(clips, axis=2), axis=0)  # (clips*H, frames*W, C)
        self.events.add_summary(tb_summary.image(tag, strip, dataformats='HWC'), step)
        self.events.flush()

    def hparams(self, config: Mapping[str, Any]) -> None:
        """The run's hyper-parameters (every config field, flattened) for TensorBoard's HPARAMS
        tab; the metrics are the scalars written by `write`."""
        if self.events is None:
            return
        for summary in tb_summary.hparams(_flatten(config), {}):
            self.events.add_summary(summary)
        self.events.flush()

    def truncate(self, step: int) -> None:
        """Drops the `scalars.jsonl` lines after `step`: a resumed run writes them again.
        (TensorBoard shows the newest value of a step written twice.)"""
        if self.jsonl is None or not os.path.exists(self.jsonl):
            return
        with open(self.jsonl) as f:
            lines = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
        with open(self.jsonl, 'w') as f:
            f.writelines(lines)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
