"""Finetuning as MMAction2's: a checkpoint of one class set loads into a model for another.

Every tensor whose name and shape match is copied; the head, whose shape no longer fits, keeps
its fresh initialisation and is named in one warning. Names that match nowhere stay an error
unless `load_from_strict=False`. Same policy for action_jax checkpoints and MMAction2 .pth files
(torchvision's: tests/test_resnet3d.py).
"""
import json
import logging
import pathlib
import shutil
import sys

import numpy as np
import pytest
from flax import nnx

from action_jax import progress
from action_jax.apis import init_recognizer
from action_jax.config import as_dict
from action_jax.convert.mmaction2 import (CheckpointError, apply_state_dict,
                                          load_mmaction2_checkpoint)
from action_jax.data.datasets import build_dataset
from action_jax.data.pipeline import Compose
from action_jax.models.io import (build_recognizer, check_fit, load_weights, resolve,
                                  restore_weights)
from action_jax.train import loop

CONFIGS = pathlib.Path(__file__).resolve().parent / 'configs'
sys.path.insert(0, str(CONFIGS))
sys.path.insert(0, str(CONFIGS.parents[1] / 'configs'))
import tsn_tiny  # noqa: E402
import tsn_ucf101_finetune  # noqa: E402

SKIPPED = 'keep their initialisation'  # the one warning's words


@pytest.fixture(scope='module')
def data(tiny_synthetic, tmp_path_factory):
    """The synthetic set (8 classes: 2 shapes x 4 directions) and its shape-only lists."""
    out = shutil.copytree(tiny_synthetic, tmp_path_factory.mktemp('synthetic'), dirs_exist_ok=True)
    for split in ('train', 'val'):
        lines = (out / f'synthetic_{split}_list_videos.txt').read_text().splitlines()
        # Labels 0-3 are the square's directions, 4-7 the disc's.
        (out / f'shape_{split}_list_videos.txt').write_text(''.join(
            f'{path} {int(label) // 4}\n' for path, label in map(str.split, lines)))
    return out


@pytest.fixture(scope='module')
def pretrained(data, tmp_path_factory):
    """Two epochs (8 steps) of the 8-class tiny TSN: the checkpoint to finetune."""
    config = tsn_tiny.get_config(str(data))
    config.train_cfg.update(max_epochs=2, val_interval=4)
    config.test_dataloader.dataset = {}
    workdir = tmp_path_factory.mktemp('pretrained')
    loop.train_and_evaluate(config, str(workdir))
    return workdir


def shape_config(data):
    """The tiny TSN for the 2 shapes, as configs/tsn_ucf101_finetune.py sets new classes."""
    return tsn_ucf101_finetune.use_data(
        tsn_tiny.get_config(str(data)), num_classes=2,
        ann_file_train=str(data / 'shape_train_list_videos.txt'),
        ann_file_val=str(data / 'shape_val_list_videos.txt'),
        data_root=str(data / 'videos_train'), data_root_val=str(data / 'videos_val'))


def arrays(model) -> dict[str, np.ndarray]:
    return {'/'.join(map(str, path)): np.asarray(v.get_value()) for path, v in
            nnx.to_flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat)))}


def flat(tree, prefix='') -> dict:
    """{'a/0/b': leaf} of restore_weights' nested dicts."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in flat(sub, f'{prefix}/{key}'
                                                                if prefix else key).items()}


def skipped_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and SKIPPED in r.getMessage()]


def assert_backbone_copied_head_new(model, fresh, stored: dict[str, np.ndarray]):
    """Copies of the same float32 arrays, so equal exactly; the head as initialised."""
    loaded, initial = arrays(model), arrays(fresh)
    assert loaded.keys() == initial.keys()
    for name, value in loaded.items():
        expected = initial[name] if name.startswith('cls_head/') else stored[name]
        np.testing.assert_array_equal(value, expected, err_msg=name)
    # The copy changed something: the checkpoint's backbone is not a fresh one.
    assert any(not np.array_equal(loaded[n], initial[n]) for n in loaded if 'backbone' in n)


def test_checkpoint_of_other_classes_loads_all_but_the_head(data, pretrained, caplog):
    config = shape_config(data)
    fresh = build_recognizer(config.model, seed=config.seed)
    model = build_recognizer(config.model, seed=config.seed)
    with caplog.at_level(logging.WARNING):
        load_weights(model, str(pretrained))
    weights = restore_weights(resolve(str(pretrained))[1])
    assert_backbone_copied_head_new(model, fresh, {**flat(weights['params']),
                                                   **flat(weights['rest'])})
    [warning] = skipped_warnings(caplog)
    assert 'cls_head/fc_cls/kernel (128, 8) vs model (128, 2)' in warning
    assert 'cls_head/fc_cls/bias (8,) vs model (2,)' in warning
    assert 'backbone' not in warning


def train_set_loss(config, checkpoint) -> float:
    """Mean cross-entropy over the training videos, each decoded as for validation, in eval
    mode: no sampling, augmentation or dropout noise, unlike the per-step training losses."""
    model = build_recognizer(config.model, seed=config.seed)
    load_weights(model, str(checkpoint))
    model.eval()
    dataset = build_dataset(as_dict(config.train_dataloader.dataset))
    pipeline = Compose(config.val_dataloader.dataset.pipeline)
    samples = [pipeline(dataset[i]) for i in range(len(dataset))]
    batch = {key: np.stack([s[key] for s in samples]) for key in ('imgs', 'label')}
    return float(model.loss(batch, rng=None)[0])


def test_finetuning_to_new_classes_trains(data, pretrained, tmp_path, caplog):
    config = shape_config(data)
    config.load_from = str(pretrained)
    # A linear probe, the quickest finetuning to show in 16 steps: the loaded backbone frozen
    # (MMAction2's frozen_stages), the new head trained. Unfrozen at this scale, 16 steps of
    # batch 4 move the backbone's BatchNorm statistics more than the head learns.
    config.model.backbone.frozen_stages = 2
    config.optim_wrapper.optimizer.lr = 0.1
    config.param_scheduler = []
    config.train_cfg.update(max_epochs=4, val_interval=4)
    config.test_dataloader.dataset = {}
    with caplog.at_level(logging.WARNING):
        loop.train_and_evaluate(config, str(tmp_path))
    assert 'cls_head/fc_cls/kernel' in skipped_warnings(caplog)[0]
    before, after = train_set_loss(config, pretrained), train_set_loss(config, tmp_path)
    # ln 2 (the new head's near-zero logits) before; about 0.61 after on x86-64.
    assert after < 0.95 * before, (before, after)

def test_other_dropout_is_no_name_mismatch(data, pretrained):
    """The checkpoint's dropout rng streams are not weights: a head without dropout loads."""
    config = shape_config(data)
    config.model.cls_head.dropout_ratio = 0.0
    load_weights(build_recognizer(config.model), str(pretrained))


def test_a_checkpoint_of_another_model_is_a_short_error():
    """Another model's checkpoint names hundreds of keys: the error shows the first and counts."""
    missing = [f'backbone/layer{i}/kernel' for i in range(300)]
    with pytest.raises(CheckpointError) as error:
        check_fit('other.pth', missing=missing, unexpected=['x_1d_b/0/bias'], mismatched={})
    message = str(error.value)
    assert 'backbone/layer11/kernel, ... (300 in all); unexpected keys' in message
    assert 'backbone/layer12/' not in message and message.endswith(': x_1d_b/0/bias')
    assert len(message) < 600


@pytest.mark.parametrize('num_stages, names', [
    (3, r'missing keys \(model variables not in the checkpoint\): backbone/layer3/0/'),
    (1, r'unexpected keys \(checkpoint entries the model lacks\): .*backbone/layer2/0/'),
])
def test_names_that_do_not_match_are_an_error_unless_not_strict(data, pretrained, caplog,
                                                                 num_stages, names):
    config = shape_config(data)
    config.model.backbone.update(num_stages=num_stages, out_indices=(num_stages - 1,),
                                 strides=(1, 2, 2)[:num_stages],
                                 dilations=(1,) * num_stages)
    config.model.cls_head.in_channels = 64 * 2 ** (num_stages - 1)
    with pytest.raises(CheckpointError, match=names):
        init_recognizer(config, str(pretrained), fuse=False)
    config.load_from_strict = False
    with caplog.at_level(logging.WARNING):
        model = init_recognizer(config, str(pretrained), fuse=False)
    assert any(r.levelno == logging.WARNING and 'backbone/layer' in r.getMessage()
               for r in caplog.records if SKIPPED not in r.getMessage())
    stored = flat(restore_weights(resolve(str(pretrained))[1])['params'])
    np.testing.assert_array_equal(model.backbone.layer1[0].conv1.conv.kernel[...],
                                  stored['backbone/layer1/0/conv1/conv/kernel'])


def test_mmaction2_checkpoint_into_a_head_for_other_classes(fixtures_dir, caplog):
    cfg = json.loads((fixtures_dir / 'tsn_r18s_model_cfg.json').read_text())['model']
    pth = fixtures_dir / 'tsn_r18s.pth'
    reference = build_recognizer(cfg)
    apply_state_dict(reference, load_mmaction2_checkpoint(pth))
    new_classes = dict(cfg, cls_head=dict(cfg['cls_head'], num_classes=5))
    fresh, model = build_recognizer(new_classes), build_recognizer(new_classes)
    with caplog.at_level(logging.WARNING):
        load_weights(model, str(pth))
    assert_backbone_copied_head_new(model, fresh, arrays(reference))
    [warning] = skipped_warnings(caplog)
    assert 'cls_head.fc_cls.weight' in warning and 'cls_head.fc_cls.bias' in warning


def test_evaluation_shows_its_progress(data, pretrained, tmp_path, monkeypatch, capsys):
    """Test mode (and validation: the same evaluate) counts batches with an ETA on a
    terminal; here 8 val videos in batches of 4."""
    monkeypatch.setattr(progress, 'enabled', lambda: True)
    config = tsn_tiny.get_config(str(data))
    config.checkpoint = str(pretrained)
    metrics = loop.test(config, str(tmp_path))
    err = capsys.readouterr().err
    assert 'Evaluating' in err and '2/2' in err and 'ETA' in err
    assert 'acc/top1' in metrics
