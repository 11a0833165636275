"""Temporal localization on your own videos (README section of that name): generated long
videos -> extract_features (tiny TSN, random weights) -> BMN training (configs/
bmn_own_videos.py, 2 epochs) -> demo_localization's PNG; and demo_long's annotated video.

Videos: 6 of 64 frames (64x64, 8 fps) with 1-2 actions each; windows of 4 frames every 4,
so each video gives 16 feature rows of the tiny TSN's 128 channels.
"""
import json
import os
import pathlib
import shutil

import av
import cv2
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from action_jax.apis import init_recognizer, load_config
from action_jax.localization.synthetic_videos import make_synthetic_videos
from action_jax.tools import extract_features

REPO = pathlib.Path(__file__).resolve().parents[1]
TSN_TINY = str(REPO / 'tests' / 'configs' / 'tsn_tiny.py')
NUM_FRAMES, FPS, WINDOW = 64, 8.0, 4
FEAT_DIM = 128  # tsn_tiny: ResNet-18's first 2 stages


def decode(path) -> np.ndarray:
    """All frames with PyAV (extract_features reads with decord: the same pixels)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


@pytest.fixture(scope='module')
def own(tmp_path_factory):
    """A working directory holding data/own_videos as the README builds it, features
    extracted for both splits."""
    root = tmp_path_factory.mktemp('own')
    data = root / 'data' / 'own_videos'
    paths = make_synthetic_videos(data, num_videos=6, num_frames=NUM_FRAMES, fps=FPS)
    for split in ('train', 'val'):
        extract_features.main([TSN_TINY, 'none', '--list', paths[f'{split}_list'],
                               '--data-prefix', paths['video_dir'], '--out',
                               str(data / 'features'), '--ann-file', paths[f'{split}_ann'],
                               '--clip-len', str(WINDOW), '--stride', str(WINDOW)])
    return root, data, paths


def test_features_csv_and_annotation_skeleton(own):
    _, data, paths = own
    names = [line.split('.')[0] for split in ('train', 'val')
             for line in open(paths[f'{split}_list']).read().split()]
    assert sorted(os.listdir(data / 'features')) == sorted(n + '.csv' for n in names)
    for name in names:
        lines = (data / 'features' / f'{name}.csv').read_text().splitlines()
        assert lines[0] == ','.join(f'f{i}' for i in range(FEAT_DIM))
        rows = np.loadtxt(lines[1:], delimiter=',', ndmin=2)
        assert rows.shape == (NUM_FRAMES // WINDOW, FEAT_DIM)
        assert np.isfinite(rows).all()
    database = json.loads(open(paths['train_ann']).read())
    assert len(database) == 4
    for info in database.values():
        assert info['duration_frame'] == NUM_FRAMES
        assert info['feature_frame'] == NUM_FRAMES  # 16 whole windows of 4 frames
        assert info['fps'] == info['rfps'] == FPS
        assert info['duration_second'] == NUM_FRAMES / FPS
        # The labelled segments written before the extraction are kept.
        assert 1 <= len(info['annotations']) <= 2
        assert all(0 <= a['segment'][0] < a['segment'][1] <= 8 for a in info['annotations'])


def test_features_are_the_pooled_backbone_output(own):
    """Each row is the mean over the window's 4 frames and the spatial grid of the unfused,
    eagerly run backbone on the same frames (resized 64 -> 32 as tsn_tiny's test pipeline
    does; its 32-pixel centre crop is then the whole frame)."""
    _, data, paths = own
    name = 'v_own00001'
    frames = decode(os.path.join(paths['video_dir'], name + '.mp4'))
    small = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_LINEAR) for f in frames])
    model = init_recognizer(TSN_TINY, None, fuse=False)
    x = (small.astype(np.float32) - np.float32([123.675, 116.28, 103.53])) \
        / np.float32([58.395, 57.12, 57.375])
    feat = np.asarray(model.backbone(jnp.asarray(x)), np.float64)  # [64, h, w, 128]
    expected = feat.reshape(NUM_FRAMES // WINDOW, -1, FEAT_DIM).mean(axis=1)
    rows = np.loadtxt(data / 'features' / f'{name}.csv', delimiter=',', skiprows=1)
    # float32 convolutions (eps 1.2e-7) summed in other orders (jit vs eager, batch of 8
    # windows vs 64 frames) and BatchNorm folded into the convs (fuse_conv_bn, ~2e-6
    # relative): ~10 layers of fan-in <= 1152 stay far below 1e-4 of the norm.
    for got, want in zip(rows, expected):
        assert np.linalg.norm(got - want) <= 1e-4 * np.linalg.norm(want)


def test_rerun_skips_done_videos_and_reports_unreadable_ones(own, tmp_path, capsys):
    _, data, paths = own
    shutil.copy(paths['train_ann'], tmp_path / 'ann.json')
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    video_list = tmp_path / 'list.txt'
    video_list.write_text(open(paths['train_list']).read() + '../broken.mp4\n')
    done = {p: p.stat().st_mtime_ns for p in (data / 'features').glob('*.csv')}
    with pytest.raises(SystemExit) as exit_info:
        extract_features.main([TSN_TINY, 'none', '--list', str(video_list), '--data-prefix',
                               paths['video_dir'], '--out', str(data / 'features'),
                               '--ann-file', str(tmp_path / 'ann.json'), '--clip-len', '4',
                               '--stride', '4'])
    assert exit_info.value.code == 1
    assert 'broken.mp4' in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in done} == done  # nothing recomputed
    assert json.loads((tmp_path / 'ann.json').read_text()) == \
        json.loads(open(paths['train_ann']).read())


def test_bad_video_list_is_one_line_error(tmp_path):
    video_list = tmp_path / 'list.txt'
    video_list.write_text('a/x.mp4\n\na_x.mp4 3\n')
    with pytest.raises(SystemExit) as exit_info:
        extract_features.main([TSN_TINY, '--list', str(video_list), '--out', str(tmp_path)])
    assert str(exit_info.value.code) == (f"error: {video_list}:3: 'a_x.mp4' has the same "
                                         "video name 'v_a_x' as line 1")


def test_chain_trains_bmn_and_draws_proposals(own, monkeypatch, capsys):
    from action_jax import demo_localization
    from action_jax.train import loop
    root, data, paths = own
    monkeypatch.chdir(root)  # the config's data paths are relative
    config = load_config(str(REPO / 'configs' / 'bmn_own_videos.py') + f':{FEAT_DIM}')
    config.train_cfg.max_epochs = 2
    config.train_cfg.val_interval = 2
    config.default_hooks.checkpoint.interval = 2
    metrics = loop.train_and_evaluate(config, str(root / 'run'))
    assert 0 <= metrics['auc'] <= 100
    out = root / 'proposals.png'
    proposals = demo_localization.main([
        str(data / 'features' / 'v_own00005.csv'), str(REPO / 'configs' / 'bmn_own_videos.py')
        + f':{FEAT_DIM}', str(root / 'run'), '--video',
        os.path.join(paths['video_dir'], 'v_own00005.mp4'), '--ann-file', paths['val_ann'],
        '--out', str(out), '--out-json', str(root / 'proposals.json')])
    assert proposals and all(0 <= p['segment'][0] <= p['segment'][1] <= NUM_FRAMES / FPS
                             for p in proposals)
    assert json.loads((root / 'proposals.json').read_text()) == {'v_own00005': proposals}
    with Image.open(out) as image:
        assert image.format == 'PNG' and image.width == 900


def test_demo_long_writes_every_frame_and_the_windows(own, tmp_path):
    from action_jax import demo_long
    _, data, paths = own
    out = tmp_path / 'long.mp4'
    windows = demo_long.main([os.path.join(paths['video_dir'], 'v_own00002.mp4'), TSN_TINY,
                              'none', paths['label_map'], '--out', str(out), '--out-json',
                              str(tmp_path / 'w.json'), '--window', '16', '--stride', '8',
                              '--target-resolution', '128', '-1'])
    frames = decode(out)
    assert frames.shape == (NUM_FRAMES, 128, 128, 3)  # drawn on frames enlarged 2x
    # Windows start at 0, 8, ..., 48: the last one ends at frame 64.
    assert [w['start_frame'] for w in windows] == [0, 8, 16, 24, 32, 40, 48]
    assert json.loads((tmp_path / 'w.json').read_text()) == windows
    # The timeline's cursor (white, 2 px) is at the left end of the bar in the first frame
    # and at the right end in the last: brighter there than in the other frame.
    bar = frames[:, -2].astype(int).sum(axis=-1)
    assert bar[0, :2].mean() > bar[-1, :2].mean() + 150
    assert bar[-1, -2:].mean() > bar[0, -2:].mean() + 150
