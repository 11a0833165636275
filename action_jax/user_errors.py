"""One-line errors, without a traceback, for the mistakes newcomers make first: a missing
config file, a misspelt or mistyped config key, a missing required flag, a checkpoint or file
that does not exist, a GPU asked for where JAX sees none.

CLIs run under `exit_on_user_error()`; absl programs also parse their flags with
`parse_flags` (`app.run(main, flags_parser=user_errors.parse_flags)`), which loads the config
file itself (once: config_flags is handed the result) so that an error inside it is reported
with its file and line.
ACTION_JAX_TRACEBACK=1 shows the traceback instead.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from collections.abc import Iterator, Sequence

from absl import flags

from action_jax import config as config_lib
from action_jax import config_path

# The part of a ml_collections message that names the key and what it looked like.
_KEY = re.compile(r"""Key "(\w+)"|['\\]+(\w+)['\\]+""")
_SUGGESTION = re.compile(r'Did you mean "(\w+)"')
_CAST = re.compile(r"field '(\w+)'.*original type <class '(\w+)'>.*type <class '(\w+)'>", re.S)


class UserError(Exception):
    """An error in what the user asked for; its message is the whole story."""


class ConfigError(UserError, ValueError):
    """A config file or a `--config.*` override that cannot be applied."""


class NoDeviceError(UserError, ValueError):
    """A device name (MMAction2 style, 'cuda:0') that JAX does not have."""

    def __init__(self, device: str):
        import jax  # here, not at import: the CLIs parse their flags before JAX starts
        present = ', '.join(f'{d.platform}:{d.id}' for d in jax.devices())
        hint = ''
        if str(device).split(':')[0] in ('cuda', 'gpu') and jax.default_backend() == 'cpu':
            hint = " -- JAX sees no GPU; for NVIDIA GPUs install pip install 'action_jax[cuda12]'"
        super().__init__(f'no JAX device {str(device)!r} (JAX has {present}){hint}')


def _key_in(message: str) -> str | None:
    found = _KEY.search(message)
    return found and (found.group(1) or found.group(2))


def _unknown_key(message: str) -> str | None:
    """'unknown config key K; did you mean S?' from ml_collections' locked-key error."""
    key = _key_in(message)
    suggestion = _SUGGESTION.search(message)
    text = f'unknown config key {key!r}' if key else 'unknown config key'
    return text + (f'; did you mean {suggestion.group(1)!r}?' if suggestion else '')


def describe_config_exception(exc: BaseException, path: str) -> str:
    """'FILE, line N: what went wrong' for an exception raised while building a config."""
    directory = os.path.dirname(os.path.abspath(path))
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) == directory]
    where = f'{frames[-1].filename}, line {frames[-1].lineno}' if frames else path
    message = str(exc.args[0]) if exc.args else ''
    cast = _CAST.search(message)
    if cast:
        what = f'config key {cast.group(1)!r} takes {cast.group(3)}, got {cast.group(2)}'
    else:
        what = f'{type(exc).__name__}: {message.splitlines()[0] if message else ""}'
    # A locked ConfigDict's message (not any AttributeError inside the file).
    if isinstance(exc, (AttributeError, KeyError)) and ('Did you mean' in message
                                                        or 'does not exist' in message):
        what = _unknown_key(message)
    return f'{where}: {what}'


def load_config_checked(spec: str):
    """config_path.load, with anything raised inside the config file as a ConfigError."""
    path = config_path.resolve(spec.partition(':')[0])
    if not os.path.isfile(path):
        raise FileNotFoundError(config_path.not_found_message(path))
    try:
        return config_path.load(spec)
    except Exception as e:  # noqa: BLE001 - any failure in a user's config file is theirs
        raise ConfigError(describe_config_exception(e, path)) from e


def _config_arg(argv: Sequence[str]) -> int | None:
    """Index in argv of the `--config` value (`--config X` or `--config=X`)."""
    for i, arg in enumerate(argv):
        if arg == '--config' and i + 1 < len(argv):
            return i + 1
        if arg.startswith('--config='):
            return i
    return None


def _override_naming(key: str, argv: Sequence[str]) -> str:
    """The `--config.a.b=v` argument whose path contains `key` (the misspelt one)."""
    for arg in argv:
        if arg.startswith('--config.') and key in arg.partition('=')[0].split('.'):
            return arg.partition('=')[0]
    return '--config'


class _LoadedConfigParser(flags.ArgumentParser):
    """Stands in for config_flags' parser of `--config`, handing over the config parse_flags
    has just loaded, so that the file runs once rather than again in config_flags."""

    def __init__(self, parser: flags.ArgumentParser, config):
        # A FlagValues parsed again keeps config_flags' parser underneath, not a chain of ours.
        self._parser = parser._parser if isinstance(parser, _LoadedConfigParser) else parser
        self._config = config

    def parse(self, argument):
        # As config_flags' parser does (DEFINE_config_file's lock_config, True by default).
        if getattr(self._parser, '_lock_config', True) and hasattr(self._config, 'lock'):
            self._config.lock()
        return self._config

    def flag_type(self) -> str:
        return self._parser.flag_type()


# absl's flags that print help and exit (with one dash or two).
_HELP_FLAGS = ('help', '?', 'helpshort', 'helpfull', 'helpxml')


def parse_flags(argv: list[str], flag_values: flags.FlagValues | None = None) -> list[str]:
    """absl's flag parsing (of `flag_values`, the program's FLAGS by default), with `--config
    configs/x.py` resolved for an installed package and every user error as one line (see the
    module docstring)."""
    values = flags.FLAGS if flag_values is None else flag_values
    argv = [argv[0]] + ['--help' if a == '-h' else a for a in argv[1:]]  # argparse's habit
    with exit_on_user_error():
        index = _config_arg(argv)
        if index is not None:
            prefix, eq, spec = argv[index].rpartition('--config=')
            path, sep, arg = spec.partition(':')
            argv[index] = prefix + eq + config_path.resolve(path) + sep + arg
            loaded = load_config_checked(argv[index].removeprefix('--config='))
            values['config'].parser = _LoadedConfigParser(values['config'].parser, loaded)
        try:
            rest = values(argv)
        except SystemExit as e:
            # absl prints the help asked for, then exits with status 1; asking is no failure.
            if e.code == 1 and any(a.startswith('-') and a.lstrip('-') in _HELP_FLAGS
                                   for a in argv[1:]):
                sys.exit(0)
            raise
        except (AttributeError, KeyError) as e:  # a misspelt --config.* override
            key = _key_in(str(e))
            if key is None:
                raise
            raise ConfigError(f'{_override_naming(key, argv)}: {_unknown_key(str(e))}') from e
        except flags.Error as e:
            message = str(e).splitlines()[0]
            if index is not None:
                message = config_lib.dict_override_hint(argv, values['config'].value) or message
            required = re.search(r'Flag --(\w+) must have a value other than None', message)
            if required:
                name = required.group(1)
                message = f'--{name} is required: {values[name].help}'
            raise UserError(message) from e
        if index is not None:
            check_paths(values['config'].value)
        return rest


# Config keys naming files a run reads; checked before any work (the synthetic data set is
# generated before test mode would reach the checkpoint).
PATH_KEYS = ('checkpoint', 'load_from', 'resume_from')


def check_paths(config) -> None:
    """A UserError for a local path under PATH_KEYS that does not exist (URLs pass)."""
    for key in PATH_KEYS:
        path = config.get(key)
        if path and '://' not in path and not os.path.exists(path):
            raise UserError(f'--config.{key}: {path!r} does not exist')


# Where JAX starts its backends.
_JAX_BACKENDS = os.path.join('jax', '_src', 'xla_bridge.py')


def _backend_missing(exc: BaseException) -> str | None:
    """The message for JAX failing to start a platform it was told to use (JAX_PLATFORMS)."""
    message = str(exc)
    if isinstance(exc, RuntimeError) and 'Unable to initialize backend' in message:
        what = message.splitlines()[0]
    elif (isinstance(exc, AssertionError) and os.environ.get('JAX_PLATFORMS')
          and traceback.extract_tb(exc.__traceback__)[-1].filename.endswith(_JAX_BACKENDS)):
        # JAX skips 'cuda' where it sees no NVIDIA GPU, then asserts that some backend started.
        what = f"JAX started none of JAX_PLATFORMS={os.environ['JAX_PLATFORMS']!r}"
    else:
        return None
    return (f'{what} -- for NVIDIA GPUs install '
            "pip install 'action_jax[cuda12]', or unset JAX_PLATFORMS to use the CPU")


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn user errors into 'error: ...' on stderr and exit status 2."""
    try:
        yield
    except (UserError, FileNotFoundError, NotADirectoryError, RuntimeError, AssertionError) as e:
        message = (_backend_missing(e) if isinstance(e, (RuntimeError, AssertionError))
                   and not isinstance(e, UserError) else str(e))
        if message is None or os.environ.get('ACTION_JAX_TRACEBACK') == '1':
            raise
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)
