"""The synthetic data set: layout, determinism, balance, and motion that needs time order."""
import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from action_jax.data.readers import PyAVReader, open_video
from action_jax.data.synthetic import (CLASS_NAMES, DIRECTIONS, _split_plan, clip_positions,
                                       make_synthetic, render_clip, sample_clip, write_video)

SMALL = dict(num_videos=32, width=48, height=40, frames=12)  # small frames: x264 at its least repeatable


@pytest.fixture(scope='session')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic')
    return out, make_synthetic(out, seed=3, rawframes=True, **SMALL)


def _lines(path) -> list[str]:
    return open(path).read().splitlines()


def _decode(path) -> np.ndarray:
    reader = open_video(path, 'pyav')
    return reader.get_frames(np.arange(len(reader)))


def test_layout_and_list_files(dataset):
    out, info = dataset
    assert info['class_names'] == list(CLASS_NAMES) == _lines(out / 'label_map.txt')
    assert len(CLASS_NAMES) == 8
    for split in ('train', 'val'):
        videos = info['videos'][split]
        assert videos['ann_file'] == str(out / f'synthetic_{split}_list_videos.txt')
        for line in _lines(videos['ann_file']):
            match = re.fullmatch(r'(\w+)/(\d{5})\.mp4 (\d)', line)
            assert match, line
            assert match[1] == CLASS_NAMES[int(match[3])]
            reader = open_video(f'{videos["data_prefix"]}/{match[1]}/{match[2]}.mp4')
            assert len(reader) == SMALL['frames'] and reader.fps == pytest.approx(8)
        frames = info['rawframes'][split]
        for line in _lines(frames['ann_file']):
            match = re.fullmatch(r'(\w+/\d{5}) (\d+) (\d)', line)
            assert match, line
            assert int(match[2]) == SMALL['frames']
            files = sorted(p.name for p in (out / f'rawframes_{split}' / match[1]).iterdir())
            assert files == [f'img_{k:05}.jpg' for k in range(1, SMALL['frames'] + 1)]


def test_rawframes_match_the_video(dataset):
    out, info = dataset
    rel = _lines(info['videos']['val']['ann_file'])[0].split()[0]
    video = _decode(out / 'videos_val' / rel)
    jpeg = np.asarray(Image.open(out / 'rawframes_val' / rel[:-4] / 'img_00005.jpg'))
    assert jpeg.shape == video[4].shape
    assert np.abs(jpeg.astype(int) - video[4]).mean() < 3  # JPEG quality 95


def test_balanced_with_a_quarter_for_validation(dataset):
    _, info = dataset
    for split, per_class in (('train', 3), ('val', 1)):
        labels = [int(line.split()[-1]) for line in _lines(info['videos'][split]['ann_file'])]
        assert np.bincount(labels, minlength=8).tolist() == [per_class] * 8
    plan = _split_plan(240)  # the default size
    assert [s for s, _, _ in plan].count('val') == 64 and len(plan) == 240
    assert len(_split_plan(250)) == 248  # rounded down to a multiple of the classes
    with pytest.raises(ValueError):
        _split_plan(15)


def test_same_seed_same_data(tmp_path, dataset):
    out, _ = dataset
    again = make_synthetic(tmp_path / 'again', seed=3, **SMALL)
    make_synthetic(tmp_path / 'other', seed=4, **SMALL)
    for split in ('train', 'val'):
        name = f'synthetic_{split}_list_videos.txt'
        assert (out / name).read_bytes() == (tmp_path / 'again' / name).read_bytes()
    rel = _lines(again['videos']['train']['ann_file'])[5].split()[0]
    first, second = out / 'videos_train' / rel, tmp_path / 'again' / 'videos_train' / rel
    assert first.read_bytes() == second.read_bytes()  # single-threaded x264
    np.testing.assert_array_equal(_decode(first), _decode(second))
    assert not np.array_equal(_decode(first), _decode(tmp_path / 'other' / 'videos_train' / rel))


def _centroids(frames: np.ndarray) -> np.ndarray:
    """Object centre (x, y) per frame: pixels far from the background's median colour."""
    frames = frames.astype(np.float32)
    background = np.median(frames.reshape(-1, 3), axis=0)
    mask = np.abs(frames - background).sum(-1) > 170
    assert mask.reshape(len(frames), -1).any(1).all()
    yy, xx = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
    area = mask.sum((1, 2))
    return np.stack([(mask * xx).sum((1, 2)) / area, (mask * yy).sum((1, 2)) / area], 1)


def test_objects_move_in_the_class_direction(dataset):
    out, info = dataset
    for split in ('train', 'val'):
        for line in _lines(info['videos'][split]['ann_file']):
            rel, label = line.split()
            centres = _centroids(_decode(out / f'videos_{split}' / rel))
            steps = np.diff(centres, axis=0)
            direction = np.array(DIRECTIONS[CLASS_NAMES[int(label)].split('_')[1]])
            along = steps @ direction
            across = steps @ direction[::-1]
            assert (along > 0).mean() >= 0.9, (rel, along)
            assert along.sum() > 8 and np.abs(across.sum()) < 1.5, (rel, along, across)


def _scalars(spec) -> dict:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
            if f.name not in ('direction', 'background')}


def test_reversed_clip_is_the_opposite_class():
    """A 'left' clip is a 'right' clip backwards, drawn from the same parameters: neither a
    single frame nor the set of frames tells the sign of the motion."""
    for seed in range(6):
        for forward, backward in (('right', 'left'), ('down', 'up')):
            for shape in ('square', 'disc'):
                label = CLASS_NAMES.index(f'{shape}_{forward}')
                spec = sample_clip(label, np.random.default_rng(seed), 64, 48)
                opposite = sample_clip(CLASS_NAMES.index(f'{shape}_{backward}'),
                                       np.random.default_rng(seed), 64, 48)
                assert _scalars(opposite) == _scalars(spec)
                np.testing.assert_array_equal(opposite.background, spec.background)
                quiet = dataclasses.replace(spec, noise_std=0.0)
                clip = render_clip(quiet, 10, np.random.default_rng(0))
                back = render_clip(dataclasses.replace(quiet, direction=backward), 10,
                                   np.random.default_rng(0))
                np.testing.assert_array_equal(back, clip[::-1])


def test_objects_stay_inside_the_frame():
    rng = np.random.default_rng(0)
    for _ in range(200):
        label = int(rng.integers(8))
        width, height = int(rng.choice([48, 64, 128])), int(rng.choice([40, 48, 96]))
        spec = sample_clip(label, rng, width, height)
        corners = clip_positions(spec, 16)
        assert corners.min() >= 0
        assert (corners[:, 0] + spec.size).max() <= width
        assert (corners[:, 1] + spec.size).max() <= height


def test_write_video_keyframes_and_checks(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (25, 32, 48, 3), dtype=np.uint8)
    write_video(tmp_path / 'clip.mp4', frames, 25, gop_size=10)
    reader = PyAVReader(tmp_path / 'clip.mp4')
    assert len(reader) == 25 and reader.fps == 25 and list(reader.keyframes) == [0, 10, 20]
    with pytest.raises(ValueError, match='even'):
        write_video(tmp_path / 'odd.mp4', frames[:, :31], 25)
    with pytest.raises(ValueError, match='uint8'):
        write_video(tmp_path / 'float.mp4', frames.astype(np.float32), 25)


def test_cli(tmp_path):
    out = tmp_path / 'cli'
    result = subprocess.run(
        [sys.executable, '-m', 'action_jax.tools.make_synthetic', '--out', str(out),
         '--num-videos', '16', '--seed', '1', '--width', '32', '--height', '32',
         '--frames', '6', '--rawframes'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "{'train': 8, 'val': 8}" in result.stdout
    assert len(_lines(out / 'synthetic_train_list_rawframes.txt')) == 8
    assert (out / 'rawframes_val' / 'disc_down' / '00014' / 'img_00006.jpg').is_file()
