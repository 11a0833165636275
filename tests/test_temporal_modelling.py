"""TSM sees the order of frames, TSN does not: a short training run on a task that is only order.

The synthetic set relabelled with the sign of the motion (left/up = 0, right/down = 1): a
'left' clip is a 'right' clip played backwards, so the set of frames is the same for both
labels and a model that averages per-frame features (TSN) is left at chance, while TSM's
shift compares neighbouring frames. Same data, segments, backbone and steps for both.
"""
import pathlib
import sys

import pytest

from action_jax.data.synthetic import CLASS_NAMES, make_synthetic
from action_jax.train import loop

CONFIGS = pathlib.Path(__file__).resolve().parent / 'configs'
sys.path.insert(0, str(CONFIGS))
sys.path.insert(0, str(CONFIGS.parents[1] / 'configs'))
import tsm_tiny  # noqa: E402
import tsn_synthetic  # noqa: E402
import tsn_tiny  # noqa: E402

FORWARD = ('right', 'down')
EPOCHS = 8  # of 18 steps (72 training videos, batch 4); 24 validation videos


@pytest.fixture(scope='module')
def direction_data(tmp_path_factory):
    out = tmp_path_factory.mktemp('direction')
    make_synthetic(str(out), num_videos=96, seed=1, width=48, height=40, frames=16)
    for split in ('train', 'val'):
        lists = out / f'synthetic_{split}_list_videos.txt'
        lines = []
        for line in lists.read_text().splitlines():
            path, label = line.split()
            forward = CLASS_NAMES[int(label)].split('_')[1] in FORWARD
            lines.append(f'{path} {int(forward)}')
        lists.write_text('\n'.join(lines) + '\n')
    return out


def train(config, workdir) -> float:
    config.model.cls_head.num_classes = 2
    config.train_cfg.update(max_epochs=EPOCHS, val_interval=EPOCHS)
    config.param_scheduler = [dict(type='MultiStepLR', begin=0, end=EPOCHS, by_epoch=True,
                                   milestones=[EPOCHS - 2], gamma=0.1)]
    config.default_hooks.checkpoint.interval = EPOCHS
    return loop.train_and_evaluate(config, str(workdir))['acc/top1']


def test_tsm_learns_the_direction_tsn_cannot(direction_data, tmp_path):
    tsn = train(tsn_tiny.shrink(tsn_synthetic.get_config(), str(direction_data), num_clips=8),
                tmp_path / 'tsn')
    tsm = train(tsm_tiny.get_config(str(direction_data)), tmp_path / 'tsm')
    print(f'direction top-1: TSN {tsn:.3f}, TSM {tsm:.3f}')
    assert tsm >= 0.9
    # At chance, 18 of 24 or more right has probability ~1e-3.
    assert tsn <= 0.75
