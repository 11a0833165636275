"""Files of the localization pipelines, in MMAction2's formats.

  results.json        ActivityNet proposals: {'version', 'results': {id: [{'segment',
                      'score'}]}, 'external_data'}; ids are video names without 'v_'
  <video>.csv (TEM)   header 'action,start,end,tmin,tmax', one row per temporal step
  <video>.csv (PGM)   header 'tmin,tmax,tmin_score,tmax_score,score,match_iou,match_ioa'
  <video>.npy (PGM)   boundary-sensitive features, one row per PGM proposal
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PathLike = str | os.PathLike
TEM_HEADER = 'action,start,end,tmin,tmax'
PGM_HEADER = 'tmin,tmax,tmin_score,tmax_score,score,match_iou,match_ioa'


def dump_proposals_json(proposals: Mapping[str, Sequence[Mapping[str, Any]]], path: PathLike,
                        version: str = 'VERSION 1.3') -> None:
    """Writes {video_name: proposal_list} as ActivityNet results (MMAction2's proposals2json:
    the first two characters of each name, 'v_', are dropped)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    results = {name[2:]: [{'segment': [float(t) for t in p['segment']],
                           'score': float(p['score'])} for p in props]
               for name, props in proposals.items()}
    with open(path, 'w') as f:
        json.dump({'version': version, 'results': results, 'external_data': {}}, f)


def load_proposals_json(path: PathLike) -> dict[str, list[dict[str, Any]]]:
    """The `results` of an ActivityNet proposals file: {video id: proposal list}."""
    with open(path) as f:
        return json.load(f)['results']


def _csv_path(directory: PathLike, video_name: str) -> str:
    return os.path.join(directory, video_name + '.csv')


def _dump_csv(directory: PathLike, video_name: str, rows: np.ndarray, header: str) -> None:
    os.makedirs(directory, exist_ok=True)
    np.savetxt(_csv_path(directory, video_name), rows, header=header, delimiter=',',
               comments='')


def _load_csv(directory: PathLike, video_name: str) -> np.ndarray:
    # float32 as MMAction2 reads them; ndmin=2 keeps a one-row file 2-D.
    return np.loadtxt(_csv_path(directory, video_name), dtype=np.float32, delimiter=',',
                      skiprows=1, ndmin=2)


def dump_tem_result(directory: PathLike, video_name: str, result: np.ndarray) -> None:
    _dump_csv(directory, video_name, result, TEM_HEADER)


def load_tem_result(directory: PathLike, video_name: str) -> np.ndarray:
    return _load_csv(directory, video_name)


def dump_pgm_proposals(directory: PathLike, video_name: str, proposals: np.ndarray) -> None:
    _dump_csv(directory, video_name, proposals, PGM_HEADER)


def load_pgm_proposals(directory: PathLike, video_name: str) -> np.ndarray:
    return _load_csv(directory, video_name)


def dump_bsp_feature(directory: PathLike, video_name: str, feature: np.ndarray) -> None:
    os.makedirs(directory, exist_ok=True)
    np.save(os.path.join(directory, video_name + '.npy'), feature)


def load_bsp_feature(directory: PathLike, video_name: str) -> np.ndarray:
    return np.load(os.path.join(directory, video_name + '.npy')).astype(np.float32)
