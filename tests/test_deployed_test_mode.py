"""`--mode test --config.onnx=...` scores the exported model with the same data and metrics."""
import json
import pathlib

import numpy as np
import pytest

from action_jax.apis import load_config
from action_jax.export import __main__ as export_cli
from action_jax.export.deployed import deployed_eval_step
from action_jax.train import loop
from tolerances import NETWORK_REL, assert_close_norm

CONFIG = pathlib.Path(__file__).parent / 'configs' / 'fixture_recognizer.py'


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    from action_jax.data.synthetic import make_synthetic
    out = tmp_path_factory.mktemp('deployed')
    make_synthetic(str(out), num_videos=16, seed=2, width=96, height=72, frames=12)
    return out


def _config(videos, **fields):
    config = load_config(f'{CONFIG}:tsn_r18s')
    config.test_dataloader.dataset.update(
        ann_file=str(videos / 'synthetic_val_list_videos.txt'),
        data_prefix=dict(video=str(videos / 'videos_val')))
    config.test_dataloader.batch_size = 3
    for k, v in fields.items():
        setattr(config, k, v)
    return config


def test_onnx_test_mode_matches_jax(fixtures_dir, videos, tmp_path):
    checkpoint = str(fixtures_dir / 'tsn_r18s.pth')
    onnx_path = tmp_path / 'tsn.onnx'
    export_cli.main(['--config', f'{CONFIG}:tsn_r18s', '--checkpoint', checkpoint,
                     '--format', 'onnx', '--out', str(onnx_path)])
    jax_metrics = loop.test(_config(videos, checkpoint=checkpoint,
                                    out=str(tmp_path / 'jax.json')), str(tmp_path))
    onnx_config = _config(videos, checkpoint=checkpoint, onnx=str(onnx_path),
                          out=str(tmp_path / 'onnx.json'))
    onnx_metrics = loop.test(onnx_config, str(tmp_path), step=deployed_eval_step(onnx_config))
    assert onnx_metrics == jax_metrics

    jax_scores = np.array([r['pred_score'] for r in json.loads((tmp_path / 'jax.json').read_text())])
    onnx_scores = np.array([r['pred_score']
                            for r in json.loads((tmp_path / 'onnx.json').read_text())])
    num_val = len((videos / 'synthetic_val_list_videos.txt').read_text().split('\n')) - 1
    assert jax_scores.shape == (num_val, 10)
    assert_close_norm(onnx_scores, jax_scores, NETWORK_REL)


def test_tensorrt_without_the_package_is_a_clear_error(videos, tmp_path):
    config = _config(videos, checkpoint=str(pathlib.Path(__file__).parent / 'fixtures'
                                            / 'tsn_r18s.pth'),
                     tensorrt=str(tmp_path / 'missing.engine'))
    with pytest.raises(ImportError, match='tensorrt'):
        deployed_eval_step(config)
