"""Components from the user's own module (examples/custom_model.py: a ResNet subclass, a head,
a data set, a transform), registered through the config's `custom_imports` and used by main,
init_recognizer and the exporter alike (README "Write a new model")."""
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from action_jax.apis import init_recognizer, load_clips, load_config
from action_jax.data.datasets import DATASETS
from action_jax.data.pipeline import TRANSFORMS
from action_jax.export import __main__ as export_cli
from action_jax.models import io as model_io
from action_jax.models.builder import MODELS

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def trained(tiny_synthetic, tmp_path_factory):
    """One epoch of main on the tiny synthetic set with the example's components; returns
    (config argument, workdir, data directory)."""
    root = tmp_path_factory.mktemp('custom')
    data_dir = tiny_synthetic
    config_file = root / 'gated_tiny.py'
    config_file.write_text(textwrap.dedent(f'''
        import sys
        sys.path[:0] = [{str(REPO / 'examples')!r}, {str(REPO / 'tests' / 'configs')!r}]
        import tsn_gated_synthetic
        import tsn_tiny

        def get_config(data_dir):
            config = tsn_tiny.shrink(tsn_gated_synthetic.tsn_synthetic.get_config(), data_dir)
            config.train_cfg.max_epochs = 1
            config = tsn_gated_synthetic.use_custom_components(config)
            config.train_dataloader.dataset.max_videos = 8
            return config
        '''))
    config = f'{config_file}:{data_dir}'
    workdir = root / 'work'
    proc = subprocess.run([sys.executable, '-m', 'action_jax.main', f'--config={config}',
                           f'--workdir={workdir}'], cwd=root, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, JAX_PLATFORMS='cpu'))
    assert proc.returncode == 0, proc.stderr[-5000:]
    return config, workdir, data_dir


def test_main_trains_the_custom_components(trained):
    _, workdir, _ = trained
    step_dir = model_io.resolve(str(workdir))[1]
    # FirstVideosDataset kept 8 of the 16 training videos: 2 steps of batch 4 in the epoch.
    assert pathlib.Path(step_dir).name == '2'
    weights = model_io.restore_weights(step_dir)
    gate = np.asarray(weights['params']['backbone']['gate'])
    assert gate.shape == (128,) and not np.all(gate == 1.0)  # trained from gate_init


@pytest.fixture
def own_registries():
    """The registries as they were before the test imports custom_model in this process, so
    that other tests see the package's own components only."""
    registries = (MODELS, DATASETS, TRANSFORMS)
    saved = [dict(registry) for registry in registries]
    yield
    for registry, before in zip(registries, saved):
        registry.clear()
        registry.update(before)
    sys.modules.pop('custom_model', None)


def test_init_recognizer_and_export_use_them(trained, tmp_path, own_registries):
    config, workdir, data_dir = trained
    model = init_recognizer(config, str(workdir), device='cpu')
    assert type(model.backbone).__name__ == 'ResNetGated'
    assert type(model.cls_head).__name__ == 'TSNMaxHead'
    assert 'ResNetGated' in MODELS and 'ToGray' in TRANSFORMS  # registered by custom_imports
    video = data_dir / 'videos_val' / (data_dir / 'synthetic_val_list_videos.txt').read_text().split()[0]
    clips = load_clips(model, str(video))
    assert clips.shape == (4, 32, 32, 3)
    assert np.array_equal(clips[..., 0], clips[..., 2])  # ToGray ran in the test pipeline

    assert list(load_config(config).custom_imports.imports) == ['custom_model']
    summary = export_cli.main(['--config', config, '--checkpoint', str(workdir),
                               '--out', str(tmp_path / 'gated.onnx')])
    # The exporter's own check: onnxruntime equals JAX within its tolerance.
    assert summary['outputs'] == {'scores': ['N', 8]}
