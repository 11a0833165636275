"""Every shipped config loads, its model builds, and the K400 recipes have MMAction2's sizes."""
import importlib.util
import json
import pathlib

import jax
import pytest
from flax import nnx

from action_jax.config import default_config
from action_jax.data.pipeline import Compose
from action_jax.models.builder import build_model

CONFIGS = sorted((pathlib.Path(__file__).parents[1] / 'configs').glob('*.py'))


def load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def num_params(model_cfg) -> int:
    model = nnx.eval_shape(lambda: build_model(model_cfg.to_dict(), rngs=nnx.Rngs(0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize('path', CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_with_the_schema(path):
    config = load(path)
    assert set(config.keys()) == set(default_config().keys())
    for loader in (config.train_dataloader, config.val_dataloader, config.test_dataloader):
        if loader.dataset and 'pipeline' in loader.dataset:
            Compose(loader.dataset.pipeline)  # every transform and argument exists


@pytest.mark.parametrize('name, expected', [('tsn_k400', 24_327_632), ('tsm_k400', 24_327_632),
                                            ('i3d_k400', 28_043_472)])
def test_k400_parameter_counts(name, expected):
    config = load(CONFIGS[[p.stem for p in CONFIGS].index(name)])
    assert num_params(config.model) == expected


def test_schema_is_locked():
    config = default_config()
    with pytest.raises(AttributeError, match='max_epoch'):
        config.train_cfg.max_epoch = 3


def test_frozen_config_is_immutable_and_hashed_by_value():
    import copy
    import pickle

    from action_jax.config import FrozenConfig
    from action_jax.config_path import load
    config = load('configs/tsn_synthetic.py')
    frozen, again = FrozenConfig(config), FrozenConfig(config)
    # Pipelines (dicts inside lists) are kept, read like the ConfigDict.
    assert frozen.test_dataloader.dataset.pipeline[0]['type'] == \
        config.test_dataloader.dataset.pipeline[0]['type']
    assert frozen == again and hash(frozen) == hash(again)
    # Every value survives (tuples come back as lists, as in JSON).
    assert json.loads(json.dumps(frozen.to_dict())) == json.loads(config.to_json())
    assert copy.deepcopy(frozen) == frozen and pickle.loads(pickle.dumps(frozen)) == frozen
    with pytest.raises(AttributeError, match='immutable'):
        frozen.seed = 1
    changed = config.copy_and_resolve_references()
    changed.seed = config.seed + 1
    assert FrozenConfig(changed) != frozen
