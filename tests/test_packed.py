"""Packed data: the same clips as the raw videos (up to JPEG loss), skips, safe re-runs."""
import logging
import os

import numpy as np
import pytest

from action_jax.data import loader, packed
from action_jax.data.datasets import build_dataset
from action_jax.data.pipeline import Compose
from action_jax.data.synthetic import render_clip, sample_clip, write_video
from action_jax.tools import pack_dataset

NUM_VIDEOS, FRAMES, W, H = 3, 40, 96, 64
SAMPLE = dict(type='SampleFrames', clip_len=2, frame_interval=3, num_clips=4)
RAW = [dict(type='DecordInit'), SAMPLE, dict(type='DecordDecode')]
PACKED = [dict(type='PackedInit'), SAMPLE, dict(type='PackedDecode')]


def _pack(root, name: str, workers: int = 0, *extra: str) -> str:
    out = str(root / name)
    argv = [str(root / 'list.txt'), '--data-prefix', str(root / 'videos'), '--out', out,
            '--workers', str(workers), *extra]
    assert pack_dataset.main(argv) == 0
    return out


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Three short H.264 videos (a keyframe every 16 frames) and a corrupt one, listed in
    list.txt, packed as JPEG (several shards) and as PNG."""
    root = tmp_path_factory.mktemp('packed')
    (root / 'videos' / 'sub').mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(NUM_VIDEOS):
        clip = render_clip(sample_clip(i, rng, W, H), FRAMES, rng)
        write_video(root / 'videos' / 'sub' / f'{i}.mp4', clip, 30, gop_size=16)
        lines.append(f'sub/{i}.mp4 {i}')
    (root / 'videos' / 'broken.mp4').write_bytes(b'not a video')
    lines.insert(1, 'broken.mp4 5')
    (root / 'list.txt').write_text('\n'.join(lines) + '\n')
    # --shard-mb 0 gives each video a shard of its own; PNG goes through a worker process.
    return dict(root=root, jpg=_pack(root, 'jpg', 0, '--shard-mb', '0'),
                png=_pack(root, 'png', 1, '--ext', '.png'))


def _datasets(data, pack: str):
    ann = str(data['root'] / 'list.txt')
    raw = build_dataset(dict(type='VideoDataset', ann_file=ann,
                             data_prefix=dict(video=str(data['root'] / 'videos'))))
    return raw, build_dataset(dict(type='PackedDataset', ann_file=ann,
                                   data_prefix=dict(packed=pack)))


def _clips(data, pack: str):
    """(raw results, packed results) of every packed video, with the same rng per video."""
    raw, pk = _datasets(data, pack)
    raw_items = [raw[i] for i in range(len(raw)) if 'broken' not in raw[i]['filename']]
    assert len(pk) == len(raw_items) == NUM_VIDEOS
    return [(Compose(RAW)(r, np.random.default_rng(i)), Compose(PACKED)(pk[i],
             np.random.default_rng(i))) for i, r in enumerate(raw_items)]


def test_jpeg_clips_match_raw_videos(data):
    index = packed.read_index(data['jpg'])
    assert len(index['shards']) == NUM_VIDEOS
    for raw, pk in _clips(data, data['jpg']):
        assert pk['total_frames'] == raw['total_frames'] == FRAMES
        np.testing.assert_array_equal(pk['frame_inds'], raw['frame_inds'])
        assert pk['imgs'].dtype == np.uint8 and pk['imgs'].shape == raw['imgs'].shape
        # Quality 95 scales JPEG's quantisation steps to 1-10 grey levels; rounding to half
        # a step plus re-subsampled chroma leaves ~2 on average on these noisy frames.
        diff = np.abs(pk['imgs'].astype(np.int16) - raw['imgs']).mean(axis=(1, 2, 3))
        assert diff.max() < 4, diff


def test_png_clips_are_bit_exact(data):
    for raw, pk in _clips(data, data['png']):
        np.testing.assert_array_equal(pk['frame_inds'], raw['frame_inds'])
        np.testing.assert_array_equal(pk['imgs'], raw['imgs'])
        assert pk['avg_fps'] == raw['avg_fps'] == 30


def test_unreadable_video_skipped_and_reported(data, caplog):
    index = packed.read_index(data['jpg'])
    assert set(index['skipped']) == {'broken.mp4'}
    assert 'broken.mp4' not in index['videos']
    with caplog.at_level(logging.WARNING):
        _, pk = _datasets(data, data['jpg'])
    assert 'left out' in caplog.text
    assert [pk[i]['label'] for i in range(len(pk))] == [0, 1, 2]


def test_loader_batches_from_pack(data):
    _, pk = _datasets(data, data['jpg'])
    pipeline = [*PACKED, dict(type='FormatShape', input_format='NCHW'),
                dict(type='PackActionInputs')]
    batch = next(iter(loader.train_dataset(pk, pipeline, batch_size=2, seed=0)))
    assert batch['imgs'].shape[:2] == (2, 8) and batch['imgs'].shape[-3:] == (H, W, 3)


def test_unknown_video_names_line(data, tmp_path):
    ann = tmp_path / 'other.txt'
    ann.write_text('sub/0.mp4 0\nsub/9.mp4 1\n')
    with pytest.raises(ValueError, match=r'other.txt, line 2: sub/9.mp4 is not in the pack'):
        build_dataset(dict(type='PackedDataset', ann_file=str(ann),
                           data_prefix=dict(packed=data['jpg'])))


def test_short_side(data, tmp_path):
    out = str(tmp_path / 'small')
    (tmp_path / 'list.txt').write_text('sub/0.mp4 0\n')
    assert pack_dataset.main([str(tmp_path / 'list.txt'), '--data-prefix',
                              str(data['root'] / 'videos'), '--out', out, '--workers', '0',
                              '--short-side', '32']) == 0
    entry = packed.read_index(out)['videos']['sub/0.mp4']
    assert (entry['height'], entry['width'], entry['frames']) == (32, 48, FRAMES)


def test_rerun_skips_a_complete_pack_and_refuses_others(data, capsys):
    before = {n: os.path.getmtime(os.path.join(data['jpg'], n))
              for n in os.listdir(data['jpg'])}
    _pack(data['root'], 'jpg', 0, '--shard-mb', '0')
    assert 'nothing to do' in capsys.readouterr().out
    assert before == {n: os.path.getmtime(os.path.join(data['jpg'], n))
                      for n in os.listdir(data['jpg'])}
    argv = [str(data['root'] / 'list.txt'), '--out', data['jpg'], '--quality', '80']
    assert pack_dataset.main(argv) == 1
    assert 'another list or options' in capsys.readouterr().err
    # Another --data-prefix (its videos may differ, or be found where they were skipped).
    argv = [str(data['root'] / 'list.txt'), '--data-prefix', str(data['root']), '--out',
            data['jpg'], '--workers', '0', '--shard-mb', '0']
    assert pack_dataset.main(argv) == 1
    assert 'another list or options' in capsys.readouterr().err


def test_incomplete_pack_refused_then_overwritten(data, tmp_path, capsys):
    out = tmp_path / 'pack'
    out.mkdir()
    (out / 'frames-00000.array_record.tmp').write_bytes(b'partial')
    argv = [str(data['root'] / 'list.txt'), '--data-prefix', str(data['root'] / 'videos'),
            '--out', str(out), '--workers', '0', '--ext', '.png']
    assert pack_dataset.main(argv) == 1
    assert 'incomplete pack' in capsys.readouterr().err
    assert pack_dataset.main(argv + ['--overwrite']) == 0
    assert sorted(os.listdir(out)) == ['frames-00000.array_record', 'index.json']
    (tmp_path / 'notes.txt').write_text('x')
    assert pack_dataset.main(argv[:3] + ['--out', str(tmp_path)]) == 1
    assert 'not a pack' in capsys.readouterr().err


def test_nothing_readable_is_an_error_and_leaves_no_pack(data, tmp_path, capsys):
    """A wrong --data-prefix: exit status 1, and no empty pack that the re-run with the right
    one would take as complete."""
    out = tmp_path / 'pack'
    argv = [str(data['root'] / 'list.txt'), '--data-prefix', str(tmp_path), '--out', str(out),
            '--workers', '0']
    assert pack_dataset.main(argv) == 1
    assert 'is --data-prefix the directory' in capsys.readouterr().err
    assert not out.exists() or not os.listdir(out)
    assert pack_dataset.main(argv[:1] + ['--data-prefix', str(data['root'] / 'videos')]
                             + argv[3:]) == 0
    assert len(packed.read_index(str(out))['videos']) == NUM_VIDEOS
