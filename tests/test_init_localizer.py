"""init_localizer reproduces MMAction2's pre-sigmoid BMN, TEM and PEM outputs from its .pth."""
import json

import jax
import numpy as np
import pytest

from action_jax.apis import init_localizer
from tolerances import NETWORK_REL, assert_close_norm


def _close(ours, ref):
    assert_close_norm(np.asarray(ours), ref, NETWORK_REL)


@pytest.mark.parametrize('name', ['bmn_s', 'bsn_tem_s', 'bsn_pem_s'])
def test_pre_sigmoid_outputs_match_mmaction2(fixtures_dir, name):
    model_cfg = json.loads((fixtures_dir / f'{name}_model_cfg.json').read_text())['model']
    model = init_localizer({'model': model_cfg}, str(fixtures_dir / f'{name}.pth'))
    io = np.load(fixtures_dir / f'{name}_io.npz')
    with jax.default_matmul_precision('highest'):
        if name == 'bmn_s':
            out = model(np.transpose(io['input'], (0, 2, 1)))  # N, C, T -> N, T, C
            _close(np.transpose(out.confidence_map, (0, 3, 1, 2)), io['confidence_map_logit'])
            _close(out.start, io['start_logit'])
            _close(out.end, io['end_logit'])
        elif name == 'bsn_tem_s':
            out = model(np.transpose(io['input'], (0, 2, 1)))
            _close(np.transpose(out, (0, 2, 1)), io['tem_logit'])
        else:
            _close(model(io['input']), io['pem_logit'])
