"""convert_mmaction2: a .pth becomes a checkpoint that test mode and load_weights accept."""
import pathlib

import jax
import numpy as np
from flax import nnx

from action_jax.apis import load_config
from action_jax.tools import convert_mmaction2
from action_jax.models.io import build_recognizer, load_weights
from tolerances import NETWORK_REL, assert_close_norm

CONFIG = pathlib.Path(__file__).parent / 'configs' / 'fixture_recognizer.py'


def test_converted_checkpoint_reproduces_mmaction2(fixtures_dir, tmp_path, capsys):
    convert_mmaction2.main([str(fixtures_dir / 'tsn_r18s.pth'),
                            '--config', f'{CONFIG}:tsn_r18s', '--out', str(tmp_path)])
    assert 'checkpoints/0' in capsys.readouterr().out
    config = load_config(f'{CONFIG}:tsn_r18s')
    model = build_recognizer(config.model, seed=123)
    load_weights(model, str(tmp_path))
    model.eval()
    io = np.load(fixtures_dir / 'tsn_r18s_io.npz')
    x = np.transpose(io['input'], (0, 1, 3, 4, 2))  # N, segments, C, H, W -> channels-last
    with jax.default_matmul_precision('highest'):
        scores = np.asarray(model(x))
    assert_close_norm(scores, io['cls_score'], NETWORK_REL)
    # Every BatchNorm statistic came across too, not only the parameters.
    fresh = build_recognizer(config.model, seed=123)
    stats = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    assert any(not np.array_equal(a, b) for a, b in
               zip(stats, jax.tree.leaves(nnx.state(fresh, nnx.BatchStat))))
