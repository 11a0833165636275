"""The grain loader: determinism, exact resume with worker processes, broken videos, sharding."""

import numpy as np
import pytest

from action_jax.data import loader
from action_jax.data.datasets import VideoDataset
from action_jax.train.loop import _check_failure_ratio

PIPELINE = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3),
    dict(type='DecordDecode'),
    dict(type='MultiScaleCrop', input_size=32, scales=(1, 0.875, 0.75), random_crop=False,
         max_wh_scale_gap=1),
    dict(type='Resize', scale=(32, 32), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """12 good synthetic videos plus a list file that also names 4 broken ones."""
    from action_jax.data.synthetic import make_synthetic
    root = tmp_path_factory.mktemp('loader')
    made = make_synthetic(str(root / 'data'), num_videos=16, seed=1, width=48, height=40,
                          frames=12)
    good = (root / 'data' / 'synthetic_train_list_videos.txt').read_text().split('\n')
    good = [line for line in good if line.strip()]
    prefix = root / 'data' / 'videos_train'
    (prefix / 'zero.mp4').write_bytes(b'')
    (prefix / 'garbage.mp4').write_bytes(np.random.default_rng(0).bytes(5000))
    first = (prefix / good[0].split()[0]).read_bytes()
    (prefix / 'truncated.mp4').write_bytes(first[:len(first) // 3])
    broken = ['zero.mp4 0', 'garbage.mp4 1', 'truncated.mp4 2', 'missing.mp4 3']
    (root / 'good.txt').write_text('\n'.join(good) + '\n')
    (root / 'mixed.txt').write_text('\n'.join(good + broken) + '\n')
    (root / 'broken.txt').write_text('\n'.join(broken) + '\n')
    return root, prefix, made


def _dataset(videos, name):
    root, prefix, _ = videos
    return VideoDataset(str(root / name), data_prefix=dict(video=str(prefix)))


def _take(it, n):
    return [next(it) for _ in range(n)]


def _equal(a, b):
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_same_seed_same_batches(videos):
    ds = _dataset(videos, 'good.txt')
    a = _take(iter(loader.train_dataset(ds, PIPELINE, batch_size=4, seed=3)), 5)
    b = _take(iter(loader.train_dataset(ds, PIPELINE, batch_size=4, seed=3)), 5)
    c = _take(iter(loader.train_dataset(ds, PIPELINE, batch_size=4, seed=4)), 5)
    assert _equal(a, b)
    assert not _equal(a, c)
    assert a[0]['imgs'].shape == (4, 3, 32, 32, 3) and a[0]['imgs'].dtype == np.uint8


def test_restored_iterator_yields_the_next_batches_with_workers(videos):
    ds = _dataset(videos, 'good.txt')

    def make():
        return iter(loader.train_dataset(ds, PIPELINE, batch_size=4, seed=5, num_workers=2))
    it = make()
    _take(it, 4)
    state = it.get_state()
    expected = _take(it, 4)
    fresh = make()
    fresh.set_state(state)
    assert _equal(_take(fresh, 4), expected)


def test_broken_videos_are_skipped_counted_and_named(videos):
    ds = _dataset(videos, 'mixed.txt')
    it = iter(loader.train_dataset(ds, PIPELINE, batch_size=4, seed=0))
    batches = _take(it, 8)  # two epochs of 16 samples
    skipped = sum(int(b['num_skipped'].sum()) for b in batches)
    assert skipped >= 8  # each broken sample is met at least once per epoch
    # The batches name them (lines 'file: error'), one line per skipped sample.
    reports = [line for b in batches for names in b['skipped_files']
               for line in str(names).split('\n') if line]
    assert len(reports) == skipped
    for name in ('zero.mp4', 'garbage.mp4', 'truncated.mp4', 'missing.mp4'):
        assert any(name in line for line in reports), name
    assert all(b['imgs'].shape == (4, 3, 32, 32, 3) for b in batches)


def test_mostly_broken_data_stops_with_a_clear_error(videos):
    ds = _dataset(videos, 'broken.txt')
    with pytest.raises(RuntimeError, match='could not be decoded'):
        next(iter(loader.train_dataset(ds, PIPELINE, batch_size=2, seed=0, max_retries=5)))


def test_failure_ratio_guard():
    class Cfg:
        max_failure_ratio, min_samples_for_failure_check = 0.1, 100
    _check_failure_ratio(served=50, skipped=40, dl=Cfg)  # too few samples to judge
    _check_failure_ratio(served=950, skipped=50, dl=Cfg)
    with pytest.raises(RuntimeError, match='max_failure_ratio'):
        _check_failure_ratio(served=800, skipped=200, dl=Cfg)


def test_eval_shards_cover_every_video_once(videos):
    ds = _dataset(videos, 'good.txt')
    test_pipeline = [dict(PIPELINE[1], test_mode=True) if i == 1 else t
                     for i, t in enumerate(PIPELINE) if t['type'] not in ('Flip',)]
    seen = []
    counts = []
    for shard in range(2):
        batches = list(loader.eval_dataset(ds, test_pipeline, batch_size=4, shard_index=shard,
                                           shard_count=2))
        counts.append(len(batches))
        for b in batches:
            seen += list(b['index'][b['valid']])
    assert counts[0] == counts[1]  # every process runs the same number of steps
    assert sorted(seen) == list(range(len(ds)))
