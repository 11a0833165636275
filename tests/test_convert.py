"""MMAction2 checkpoint conversion: fidelity to MMAction2 1.2.0, strictness and safety."""
import json
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from action_jax.convert.mmaction2 import (CheckpointError, apply_state_dict,
                                          load_mmaction2_checkpoint)
from action_jax.models.builder import build_model
from tolerances import NETWORK_REL, assert_close_norm


def fixture_model(fixtures_dir, name: str) -> nnx.Module:
    cfg = json.loads((fixtures_dir / f'{name}_model_cfg.json').read_text())['model']
    return build_model(cfg, rngs=nnx.Rngs(1))


@pytest.mark.parametrize('name', ['tsn_r50s', 'tsn_r18s', 'tsm_r50s'])
def test_converted_weights_reproduce_mmaction2(fixtures_dir, name):
    model = fixture_model(fixtures_dir, name)
    missing, unexpected = apply_state_dict(
        model, load_mmaction2_checkpoint(fixtures_dir / f'{name}.pth'))
    assert missing == unexpected == []
    model.eval()
    io = np.load(fixtures_dir / f'{name}_io.npz')
    x = jnp.asarray(io['input'].transpose(0, 1, 3, 4, 2))  # N, segments, C, H, W -> NTHWC
    with jax.default_matmul_precision('highest'):
        feat = model.extract_feat(x)
        cls_score = model(x)
        pred_score = model.predict_scores(x)
    assert_close_norm(feat.transpose(0, 3, 1, 2), io['backbone_feat'], NETWORK_REL)
    assert_close_norm(cls_score, io['cls_score'], NETWORK_REL)
    assert_close_norm(pred_score, io['pred_score'], NETWORK_REL)


def test_state_dict_keys_and_layouts(fixtures_dir):
    state = load_mmaction2_checkpoint(fixtures_dir / 'tsm_r50s.pth')
    lines = (fixtures_dir / 'tsm_r50s_keys.txt').read_text().splitlines()
    assert sorted(state) == sorted(line.split('\t')[0] for line in lines if line[0] != '#')
    assert sum(k.endswith('conv1.conv.net.weight') for k in state) == 7
    model = fixture_model(fixtures_dir, 'tsm_r50s')
    apply_state_dict(model, state)
    # OIHW -> HWIO; Linear (out, in) -> (in, out); running_var -> var.
    np.testing.assert_array_equal(model.backbone.layer1[0].conv1.conv.kernel[...],
                                  state['backbone.layer1.0.conv1.conv.net.weight']
                                  .transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.backbone.conv1.conv.kernel[...][:, :, 1, 5],
                                  state['backbone.conv1.conv.weight'][5, 1])
    np.testing.assert_array_equal(model.cls_head.fc_cls.kernel[...],
                                  state['cls_head.fc_cls.weight'].T)
    np.testing.assert_array_equal(model.backbone.layer2[0].downsample.bn.var[...],
                                  state['backbone.layer2.0.downsample.bn.running_var'])


def test_strict_errors_name_the_keys(fixtures_dir):
    state = load_mmaction2_checkpoint(fixtures_dir / 'tsn_r18s.pth')
    model = fixture_model(fixtures_dir, 'tsn_r18s')

    incomplete = dict(state)
    del incomplete['backbone.layer2.1.conv2.bn.running_mean']
    with pytest.raises(CheckpointError, match=r'missing keys.*backbone/layer2/1/conv2/bn/mean'):
        apply_state_dict(model, incomplete)
    extra = {'cls_head.fc_extra.weight': np.zeros((3, 3), np.float32)}
    with pytest.raises(CheckpointError, match=r'unexpected keys.*cls_head\.fc_extra\.weight'):
        apply_state_dict(model, dict(state, **extra))

    fc_before = np.array(model.cls_head.fc_cls.bias[...])
    missing, unexpected = apply_state_dict(model, dict(incomplete, **extra), strict=False)
    assert missing == ['backbone/layer2/1/conv2/bn/mean']
    assert unexpected == ['cls_head.fc_extra.weight']
    np.testing.assert_array_equal(model.cls_head.fc_cls.bias[...], state['cls_head.fc_cls.bias'])
    assert not np.array_equal(fc_before, state['cls_head.fc_cls.bias'])


def test_checkpoint_layouts(tmp_path, fixtures_dir):
    state = load_mmaction2_checkpoint(fixtures_dir / 'tsn_r18s.pth')
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    wrapped = {'meta': {'mmaction2_version': '0.24.1'},
               'state_dict': {'module.' + k: v for k, v in tensors.items()},
               'optimizer': {'state': {}, 'param_groups': [{'lr': 0.01, 'params': [0, 1]}]}}
    for layout, ckpt in [('dataparallel_with_optimizer', wrapped), ('bare', tensors)]:
        torch.save(ckpt, tmp_path / f'{layout}.pth')
        loaded = load_mmaction2_checkpoint(tmp_path / f'{layout}.pth')
        assert sorted(loaded) == sorted(state)
        np.testing.assert_array_equal(loaded['cls_head.fc_cls.weight'],
                                      state['cls_head.fc_cls.weight'])


class RunsShellCommand:
    """Unpickling this would call os.system; a safe loader must refuse it."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize('writer', ['torch_save', 'plain_pickle'])
def test_malicious_pickle_is_refused(tmp_path, writer):
    sentinel = tmp_path / 'pwned'
    payload = {'state_dict': {}, 'meta': RunsShellCommand(f'touch {sentinel}')}
    path = tmp_path / 'evil.pth'
    if writer == 'torch_save':
        torch.save(payload, path)
    else:  # A legacy (non-zip) checkpoint.
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match=r'refusing to load.*evil\.pth.*GLOBAL \w+\.system'):
        load_mmaction2_checkpoint(path)
    assert not sentinel.exists()

