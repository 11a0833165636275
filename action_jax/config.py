"""The configuration schema: every key a config may set, with MMAction2 1.x's section names.

Config files (`configs/*.py`) start from `default_config()` and assign fields. The schema'd
sections are locked, so a misspelt key -- in a file or as `--config.x=y` -- is an error that names
it. Free-form sections (the `model` dict, each dataset dict, pipelines, schedulers) are checked
by the component that consumes them, which names the offending key too.
"""
import re
from collections.abc import Mapping
from typing import Any, Sequence

import jax.numpy as jnp
from ml_collections import ConfigDict
from ml_collections.config_dict import placeholder

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def as_dict(section: Mapping) -> dict:
    """A config section (ConfigDict, FrozenConfig or dict) as a plain dict."""
    return section.to_dict() if hasattr(section, 'to_dict') else dict(section)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenConfig(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, FrozenConfig):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class FrozenConfig(Mapping):
    """An immutable config, equal and hashed by value, read like a ConfigDict
    (`cfg.test_dataloader.dataset`, `cfg['model']`, `cfg.get(...)`, `to_dict()`).

    The config a model carries (`model.cfg`): nnx keeps it in the model's static graph
    definition, which must be hashable. ml_collections' FrozenConfigDict would do, but it
    refuses dicts inside lists, which is what every pipeline is.
    """

    __slots__ = ('_items', '_hash')

    def __init__(self, mapping: Mapping):
        object.__setattr__(self, '_items', {k: _freeze(v) for k, v in as_dict(mapping).items()})
        object.__setattr__(self, '_hash', None)

    def __getitem__(self, key):
        return self._items[key]

    def __getattr__(self, key):
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f'the config has no key {key!r}') from None

    def __setattr__(self, key, value):
        raise AttributeError(f'{type(self).__name__} is immutable; change a copy: '
                             'ConfigDict(cfg.to_dict())')

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, '_hash', hash(tuple(sorted(self._items.items(),
                                                               key=lambda kv: str(kv[0])))))
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, FrozenConfig) and self._items == other._items

    def __reduce__(self):  # copy/pickle rebuild it rather than set its slots
        return FrozenConfig, (self.to_dict(),)

    def to_dict(self) -> dict:
        return {k: _thaw(v) for k, v in self._items.items()}

    def __repr__(self) -> str:
        return f'FrozenConfig({self.to_dict()!r})'


def compute_dtype(config: Mapping):
    """The jnp dtype of `config.compute_dtype` (float32 when the config has none)."""
    name = config.get('compute_dtype', 'float32')
    if name not in DTYPES:
        raise ValueError(f'compute_dtype={name!r}; known: {", ".join(DTYPES)}')
    return DTYPES[name]


def dataloader(batch_size: int = 8, num_workers: int = 0) -> ConfigDict:
    """One data loader; `batch_size` is per device, as MMAction2's is per GPU."""
    return ConfigDict(dict(
        batch_size=batch_size,
        # Loader worker processes per local device, as MMAction2's per-GPU num_workers: one
        # process driving 8 devices starts 8 x num_workers, capped by the CPUs it may use
        # (data/loader.py: total_workers). 0 loads in the trainer's process (2 read threads).
        num_workers=num_workers,
        # dict(type='VideoDataset', ann_file=..., data_prefix=dict(video=...), pipeline=[...])
        dataset=ConfigDict(),
        # A sample that cannot be decoded is skipped and replaced. If more than this fraction of
        # the samples served so far (after `min_samples_for_failure_check`) were skipped, the data
        # is taken to be broken and training stops.
        max_failure_ratio=0.05,
        min_samples_for_failure_check=200,
    ))


def default_config() -> ConfigDict:
    c = ConfigDict()
    c.model = ConfigDict()  # MMAction2's model dict: dict(type='Recognizer2D', backbone=..., ...)
    c.train_dataloader = dataloader()
    c.val_dataloader = dataloader()
    c.test_dataloader = dataloader()

    c.optim_wrapper = ConfigDict(dict(
        optimizer=ConfigDict(dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4,
                                  nesterov=False, betas=(0.9, 0.999), eps=1e-8)),
        clip_grad=ConfigDict(dict(max_norm=placeholder(float), norm_type=2)),
        # MMAction2's DefaultOptimWrapperConstructor multipliers; fc_lr5 is TSM's constructor.
        paramwise_cfg=ConfigDict(dict(fc_lr5=False, norm_decay_mult=1.0, bias_decay_mult=1.0,
                                      bias_lr_mult=1.0)),
    ))
    # MMAction2's param_scheduler list, e.g.
    # [dict(type='MultiStepLR', begin=0, end=100, by_epoch=True, milestones=[40, 80], gamma=0.1)].
    c.param_scheduler = []
    c.auto_scale_lr = ConfigDict(dict(enable=False, base_batch_size=256))

    c.train_cfg = ConfigDict(dict(max_epochs=100, val_begin=1, val_interval=5))
    c.eval_metrics = ('top_k_accuracy', 'mean_class_accuracy')
    c.metric_options = ConfigDict(dict(topk=(1, 5)))

    # save_best: the validation metric of the best checkpoint (kept in <workdir>/best/); 'auto'
    # is acc/top1 for recognizers and auc (AR@AN) for localizers; None or '' keeps none.
    c.default_hooks = ConfigDict(dict(
        logger=ConfigDict(dict(interval=20)),
        checkpoint=ConfigDict(dict(interval=1, max_keep_ckpts=3, save_best='auto',
                                   async_save=True)),
    ))

    # A synthetic data set to generate first if it is missing, so the embedded defaults run on a
    # fresh machine: type='SyntheticVideos' (the default; make_synthetic's arguments out=...,
    # num_videos=..., ...) or 'SyntheticLocalization' (make_synthetic_localization's).
    c.synthetic_data = ConfigDict()

    # Modules to import before anything is built, which register the user's own components
    # (action_jax/registry.py), as MMAction2's custom_imports.
    c.custom_imports = ConfigDict(dict(imports=(), allow_failed_imports=False))
    c.seed = 0
    c.deterministic = False      # XLA deterministic ops (slower on GPU)
    c.compute_dtype = 'float32'  # or 'bfloat16': activations and matmuls; params stay float32
    c.load_from = placeholder(str)    # weights only; training starts at step 0
    # load_from (and init_recognizer's checkpoint): tensors whose shape differs from the model's
    # (the head, after num_classes changed) keep their initialisation, named in a warning.
    # True: a name in the model or the checkpoint but not both is an error (a wrong config or
    # file); False loads what matches and warns.
    c.load_from_strict = True
    c.resume_from = placeholder(str)  # weights + optimizer + step + data iterator
    c.checkpoint = placeholder(str)   # --mode test: the checkpoint to evaluate
    # The test's per-video results (--mode test, and the test after training): recognizers'
    # scores to .pkl or .json, BMN/PEM proposals to .json, TEM results to csvs in a directory.
    c.out = placeholder(str)
    c.onnx = placeholder(str)      # --mode test through an exported .onnx (onnxruntime)
    c.tensorrt = placeholder(str)  # --mode test through a TensorRT engine
    c.test_best = True  # after training, test the best checkpoint as well as the last
    c.lock()
    return c


def dict_override_hint(argv: Sequence[str], config: ConfigDict | None) -> str | None:
    """What to type instead of ``--config.KEY=VALUE`` when ``KEY`` holds a dict.

    ml_collections can only parse a dict literal for such a field, and says so in parser
    terms; e.g. MMAction2 1.x's ``data_prefix`` is ``dict(video=DIR)``, so the override is
    ``--config.train_dataloader.dataset.data_prefix.video=DIR``.
    """
    for arg in argv:
        match = re.fullmatch(r'--config\.([\w.]+)=(.*)', arg, re.DOTALL)
        if not match or config is None:
            continue
        node = config
        for key in match[1].split('.'):
            node = node[key] if isinstance(node, (ConfigDict, dict)) and key in node else None
        if isinstance(node, (ConfigDict, dict)) and len(node):
            keys = list(node.keys())
            return (f'--config.{match[1]} is a dict (keys: {", ".join(keys)}); set a key, '
                    f'e.g. --config.{match[1]}.{keys[0]}={match[2]}')
    return None
