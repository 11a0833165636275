"""Component registries: one plain dict {type name: class} per kind of component.

    MODELS      action_jax.models.builder    recognizers, backbones, heads, localizers
    DATASETS    action_jax.data.datasets     dataset types
    TRANSFORMS  action_jax.data.pipeline     pipeline transforms

A component from the user's own code is one entry, added before the config is built:

    from action_jax.models.builder import MODELS
    MODELS['MyResNet'] = MyResNet

either in the config file itself (it is Python, run before anything is built) or in a module
the config names in `custom_imports` (MMAction2's
`custom_imports = dict(imports=['my_package.my_module'], allow_failed_imports=False)`), which
`main`, `init_recognizer` and the exporter import first. Optional built-in components (the
localizers and their data) are listed by module in each kind's lazy table and imported on
first use, so the generic modules never import them.
"""
import importlib
from collections.abc import Mapping
from typing import Any

from absl import logging


def lookup(registry: dict[str, Any], lazy: Mapping[str, str], name: Any, where: str,
           kind: str) -> Any:
    """`registry[name]`, or the class of that name in its module in `lazy` (imported on
    first use); a KeyError naming `where` (the config key), the `kind` and the known types
    otherwise."""
    if name in registry:
        return registry[name]
    if name in lazy:
        return getattr(importlib.import_module(lazy[name]), name)
    raise KeyError(f'{where}: unknown {kind} type {name!r}; known types: '
                   f'{sorted({*registry, *lazy})}')


def import_custom_modules(config: Mapping) -> None:
    """Imports the modules of the config's `custom_imports.imports`, which register their
    components. A module that fails to import is an error naming it, unless
    `allow_failed_imports` (then it is skipped with a warning, as in MMAction2)."""
    spec = config.get('custom_imports') or {}
    for name in spec.get('imports') or ():
        try:
            importlib.import_module(name)
        except ImportError as e:
            if not spec.get('allow_failed_imports', False):
                raise ImportError(f'custom_imports: cannot import {name!r}: {e}') from e
            logging.warning('custom_imports: %s failed to import and is skipped: %s', name, e)
