"""The data preparation tools on a tiny generated tree of real mp4s (8 classes x 2-4 videos)."""
import csv
import os
import shutil
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from action_jax import config as config_lib
from action_jax import config_path
from action_jax.data.datasets import RawframeDataset, VideoDataset
from action_jax.data.readers import open_video
from action_jax.data.pipeline import Compose
from action_jax.data.synthetic import CLASS_NAMES, make_synthetic
from action_jax.tools import build_file_list, build_rawframes, check_videos, transcode_videos
from action_jax.tools._common import UserError, partial_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H, T = 48, 32, 12  # short side 32


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """videos_train/<class>/<id>.mp4 (3 per class) and videos_val (1 per class)."""
    root = tmp_path_factory.mktemp('synthetic')
    make_synthetic(root, num_videos=32, width=W, height=H, frames=T)
    return root


@pytest.fixture
def tree(synthetic, tmp_path):
    """A private copy of the training videos plus one corrupt video, SRC/<class>/<video>."""
    src = tmp_path / 'src'
    shutil.copytree(synthetic / 'videos_train', src)
    good = next((src / CLASS_NAMES[0]).iterdir())
    (src / CLASS_NAMES[0] / 'corrupt.mp4').write_bytes(good.read_bytes()[:2000])
    return src


def _reader_frames(path) -> np.ndarray:
    reader = open_video(path, backend='pyav', fallback=False)
    try:
        return reader.get_frames(np.arange(len(reader)))
    finally:
        reader.close()


def _lines(path) -> list[str]:
    with open(path) as f:
        return f.read().splitlines()


# ------------------------------------------------------------------ build_file_list

def test_build_file_list_tree_split(synthetic, tmp_path):
    src = synthetic / 'videos_train'
    out = build_file_list.main([str(src), '--out-dir', str(tmp_path), '--val-fraction', '0.34'])
    assert _lines(out['label_map']) == sorted(CLASS_NAMES)
    train, val = _lines(out['train']), _lines(out['val'])
    # 3 videos per class: round(3 * 0.34) = 1 in val, 2 in train, for every class.
    for label, name in enumerate(sorted(CLASS_NAMES)):
        assert sum(line.startswith(name + '/') for line in val) == 1
        assert sum(line.startswith(name + '/') for line in train) == 2
        assert all(line.endswith(f' {label}') for line in train + val
                   if line.startswith(name + '/'))
    assert sorted(train + val) == sorted(f'{os.path.relpath(p, src)} '
                                         f'{sorted(CLASS_NAMES).index(p.parent.name)}'
                                         for p in src.glob('*/*.mp4'))
    dataset = VideoDataset(out['train'], data_prefix=dict(video=str(src)))
    assert all(os.path.isfile(info['filename']) for info in dataset)
    # Seeded: the same seed gives the same split, another seed another one.
    again = build_file_list.main([str(src), '--out-dir', str(tmp_path / 'again'),
                                  '--val-fraction', '0.34'])
    other = build_file_list.main([str(src), '--out-dir', str(tmp_path / 'other'),
                                  '--val-fraction', '0.34', '--seed', '1'])
    assert _lines(again['val']) == val
    assert _lines(other['val']) != val


def test_build_file_list_errors(tmp_path):
    with pytest.raises(UserError, match='not a directory'):
        build_file_list.main([str(tmp_path / 'nope'), '--out-dir', str(tmp_path)])
    with pytest.raises(UserError, match='no class folders'):
        build_file_list.main([str(tmp_path), '--out-dir', str(tmp_path)])
    bad = tmp_path / 'bad.csv'
    bad.write_text('label,youtube_id,time_start\nx,y,1\n')
    with pytest.raises(UserError, match=r'bad.csv, line 1: .*time_end'):
        build_file_list.main([str(tmp_path), '--out-dir', str(tmp_path),
                              '--annotations', str(bad)])


def _kinetics_tree(synthetic, root):
    """Kinetics naming from the synthetic videos: 'disc up' -> disc_up/<id>_000001_000011.mp4;
    the 'square down' class folder is left out. Returns the CSV rows."""
    rows = []
    for k, video in enumerate(sorted((synthetic / 'videos_train').glob('*/*.mp4'))):
        name = video.parent.name
        split = 'val' if k % 3 == 0 else 'train'
        rows.append([name.replace('_', ' '), f'yt{k:03d}', '1.0', '11', split])
        if name != 'square_down':
            dst = root / name / f'yt{k:03d}_000001_000011.mp4'
            dst.parent.mkdir(exist_ok=True)
            shutil.copy(video, dst)
    rows.append(['disc up', 'gone', '0', '10', 'train'])  # listed, not downloaded
    rows.append(['', 'test01', '0', '10', 'test'])  # unlabelled test split: not listed
    return rows


def test_build_file_list_kinetics(synthetic, tmp_path, capsys):
    src = tmp_path / 'k'
    src.mkdir()
    rows = _kinetics_tree(synthetic, src)
    ann = tmp_path / 'kinetics.csv'
    with open(ann, 'w', newline='') as f:
        csv.writer(f).writerows([['label', 'youtube_id', 'time_start', 'time_end', 'split'],
                                 *rows])
    out = build_file_list.main([str(src), '--out-dir', str(tmp_path / 'lists'),
                                '--annotations', str(ann)])
    printed = capsys.readouterr().out
    assert f'class folder missing: {src / "square_down"}' in printed
    assert f'missing: {src / "disc_up" / "gone_000000_000010.mp4"}' in printed
    # Every listed class is labelled, also the missing one; display names keep their spaces.
    names = sorted(name.replace('_', ' ') for name in CLASS_NAMES)
    assert _lines(out['label_map']) == names
    expected = {'train': [], 'val': []}
    for label, yid, start, end, split in rows[:-2]:
        folder = label.replace(' ', '_')
        if folder != 'square_down':
            expected[split].append(f'{folder}/{yid}_{int(float(start)):06d}_{int(end):06d}.mp4 '
                                   f'{names.index(label)}')
    assert _lines(out['train']) == expected['train']
    assert _lines(out['val']) == expected['val']


# ------------------------------------------------------------------ build_rawframes

def test_build_rawframes_png_exact_and_rerun(tree, tmp_path, capsys):
    out = tmp_path / 'frames'
    stale = out / CLASS_NAMES[1]
    stale.mkdir(parents=True)
    first = sorted((tree / CLASS_NAMES[1]).iterdir())[0]
    # What an interrupted run leaves: a partial folder, which must not count as done.
    os.makedirs(partial_path(str(stale / first.stem)))
    counts = build_rawframes.main([str(tree), str(out), '--ext', 'png', '--short-side', '0',
                                   '--workers', '2'])
    printed = capsys.readouterr().out
    assert f'failed: {CLASS_NAMES[0]}/corrupt:' in printed
    assert not (out / CLASS_NAMES[0] / 'corrupt').exists()
    assert not os.path.exists(partial_path(str(stale / first.stem)))
    videos = sorted(tree.glob('*/*.mp4'))
    assert len(counts) == len(videos) - 1
    for video in videos:
        if video.stem == 'corrupt':
            continue
        name = f'{video.parent.name}/{video.stem}'
        ref = _reader_frames(video)
        assert counts[name] == len(ref)
        got = np.stack([np.asarray(Image.open(
            out / name / f'img_{i:05d}.png').convert('RGB')) for i in range(1, len(ref) + 1)])
        np.testing.assert_array_equal(got, ref)  # PNG is lossless: the decoder's pixels
    assert _lines(out / 'frame_counts.txt') == [f'{n} {counts[n]}' for n in sorted(counts)]
    mtime = os.path.getmtime(out / name / 'img_00001.png')
    again = build_rawframes.main([str(tree), str(out), '--ext', 'png', '--short-side', '0'])
    assert again == counts
    assert '0 videos extracted, 24 already there, 1 failed' in capsys.readouterr().out
    assert os.path.getmtime(out / name / 'img_00001.png') == mtime


def test_build_rawframes_jpg_resized_read_back(synthetic, tmp_path):
    src = synthetic / 'videos_val'
    out = tmp_path / 'frames'
    counts = build_rawframes.main([str(src), str(out), '--short-side', '16'])
    lists = build_file_list.main([str(out), '--out-dir', str(tmp_path), '--format', 'rawframes',
                                  '--val-fraction', '0'])
    dataset = RawframeDataset(lists['train'], data_prefix=dict(img=str(out)))
    assert len(dataset) == len(counts) == len(CLASS_NAMES)
    pipeline = Compose([dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=T,
                             test_mode=True),
                        dict(type='RawFrameDecode')])
    for info in dataset:
        assert info['total_frames'] == T
        video = src / (os.path.relpath(info['frame_dir'], out) + '.mp4')
        ref = _reader_frames(video)
        # The reference resized as the tool does (bilinear), then compared up to JPEG loss.
        ref = np.stack([cv2.resize(f, (24, 16), interpolation=cv2.INTER_LINEAR) for f in ref])
        imgs = pipeline(info, np.random.default_rng(0))['imgs']
        assert imgs.shape == (T, 16, 24, 3)
        # JPEG at quality 95 with 4:2:0 chroma loses ~2 levels on average on these noisy
        # textures; each frame must also be nearest to its own reference frame (the order).
        dist = np.abs(imgs[:, None].astype(int) - ref[None]).mean(axis=(2, 3, 4))
        np.testing.assert_array_equal(dist.argmin(axis=1), np.arange(T))
        assert dist.diagonal().max() < 4


# ------------------------------------------------------------------ transcode_videos

def test_transcode_videos(tree, tmp_path, capsys):
    out = tmp_path / 'dense'
    summary = transcode_videos.main([str(tree), str(out), '--short-side', '16', '--gop', '4'])
    assert summary == {'written': 24, 'skipped': 0, 'failed': 1}
    assert f'failed: {CLASS_NAMES[0]}/corrupt.mp4' in capsys.readouterr().out
    assert not (out / CLASS_NAMES[0] / 'corrupt.mp4').exists()
    assert not any(p.name.startswith('.') for p in out.rglob('*'))  # no partial files left
    for video in sorted(out.glob('*/*.mp4'))[:3]:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.width, stream.height) == ('h264', 24, 16)
            keys = [p.is_keyframe for p in container.demux(stream) if p.size]
        assert len(keys) == T
        assert keys == [i % 4 == 0 for i in range(T)]
        assert len(_reader_frames(video)) == T
    assert transcode_videos.main([str(tree), str(out), '--short-side', '16', '--gop', '4']) == \
        {'written': 0, 'skipped': 24, 'failed': 1}


# ------------------------------------------------------------------ check_videos

def test_check_videos(tree, tmp_path, capsys):
    names = sorted(os.path.relpath(p, tree) for p in tree.glob('*/*.mp4'))
    lst = tmp_path / 'list.txt'
    lst.write_text(''.join(f'{n} 0\n' for n in names) + 'nowhere/gone.mp4 1\n')
    good = tmp_path / 'good.txt'
    bad = check_videos.main([str(lst), '--data-prefix', str(tree), '--out', str(good),
                             '--config', os.path.join(REPO, 'configs', 'tsn_synthetic.py'),
                             '--workers', '2'])
    assert [name for name, _ in bad] == [f'{CLASS_NAMES[0]}/corrupt.mp4', 'nowhere/gone.mp4']
    assert bad[1][1] == 'missing'
    assert 'corrupt.mp4' in capsys.readouterr().out
    assert _lines(good) == [f'{n} 0' for n in names if 'corrupt' not in n]
    # Too short for a clip: every video has T frames.
    short = check_videos.main([str(good), '--data-prefix', str(tree), '--decoder', 'VideoInit',
                               '--min-frames', str(T + 1)])
    assert len(short) == len(names) - 1
    assert all(reason == f'too short: {T} frames, training needs {T + 1}' for _, reason in short)


# ------------------------------------------------------------------ config overrides

def test_dict_override_hint():
    config = config_path.load(os.path.join(REPO, 'configs', 'tsn_synthetic.py'))
    key = 'train_dataloader.dataset.data_prefix'
    hint = config_lib.dict_override_hint([f'--config.{key}=/data'], config)
    assert hint == (f'--config.{key} is a dict (keys: video); set a key, e.g. '
                    f'--config.{key}.video=/data')
    assert config_lib.dict_override_hint([f'--config.{key}.video=/data'], config) is None
    assert config_lib.dict_override_hint(['--config.seed=3'], config) is None


def _run_tool(name, *args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, '-m', f'action_jax.tools.{name}', *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_print_config_cli():
    cfg = os.path.join('configs', 'tsn_synthetic.py')
    ok = _run_tool('print_config', cfg, '--config.train_dataloader.dataset.data_prefix.video=/d',
                   '--config.train_cfg.max_epochs=3')
    assert ok.returncode == 0, ok.stderr
    assert 'video: /d' in ok.stdout and 'max_epochs: 3' in ok.stdout
    wrong = _run_tool('print_config', cfg, '--config.train_dataloader.dataset.data_prefix=/d')
    assert wrong.returncode == 2
    assert wrong.stderr.splitlines() == [
        'error: --config.train_dataloader.dataset.data_prefix is a dict '
        '(keys: video); set a key, e.g. --config.train_dataloader.dataset.data_prefix.video=/d']


def test_tool_error_is_one_line(tmp_path):
    result = _run_tool('build_rawframes', str(tmp_path / 'nope'), str(tmp_path / 'out'))
    assert result.returncode == 1
    assert result.stderr == f'build_rawframes: error: not a directory: {tmp_path / "nope"}\n'
    assert not (tmp_path / 'out').exists()
