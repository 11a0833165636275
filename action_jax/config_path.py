"""Finding and loading config files, also for an installed package.

`--config configs/x.py` names the checkout's configs/ (docs and tests use that path). An
installed package carries them as `action_jax.configs` (setup.py), so a path under configs/ that
does not exist from the working directory resolves to that copy; a source checkout's configs/
beside the package comes second, for editable installs run from elsewhere.
"""
from __future__ import annotations

import difflib
import importlib.util
import os

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
CONFIG_DIRS = (os.path.join(_PACKAGE, 'configs'), os.path.join(os.path.dirname(_PACKAGE), 'configs'))


def resolve(path: str | os.PathLike) -> str:
    """`path` if it exists, else the shipped copy of configs/NAME, else `path` unchanged."""
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    head, _, rest = os.path.normpath(path).partition(os.sep)
    if head == 'configs' and rest:
        for directory in CONFIG_DIRS:
            candidate = os.path.join(directory, rest)
            if os.path.exists(candidate):
                return candidate
    return path


def not_found_message(path: str) -> str:
    """'config file X does not exist', with the closest shipped config as a suggestion."""
    names = sorted({f for d in CONFIG_DIRS if os.path.isdir(d)
                    for f in os.listdir(d) if f.endswith('.py') and not f.startswith('_')})
    close = difflib.get_close_matches(os.path.basename(path), names, n=1)
    hint = f"; did you mean 'configs/{close[0]}'?" if close else ''
    return f'config file {path!r} does not exist{hint}'


def load(spec: str | os.PathLike):
    """`get_config()` of a config file: 'path.py', or 'path.py:arg' to pass `arg`, as
    ml_collections' config flags do."""
    path, sep, arg = os.fspath(spec).partition(':')
    path = resolve(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(not_found_message(path))
    module_spec = importlib.util.spec_from_file_location(
        f'_action_jax_config_{abs(hash(os.path.abspath(path)))}', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, 'get_config'):
        raise AttributeError(f'config file {path!r} defines no get_config()')
    return module.get_config(arg) if sep else module.get_config()
