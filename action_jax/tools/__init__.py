"""Command-line tools: `python -m action_jax.tools.NAME --help`."""
import argparse
from collections.abc import Sequence

OVERRIDES_HELP = ('config fields are overridden as for action_jax.main: '
                  '--config.train_dataloader.dataset.data_prefix.video=DIR')


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """`parser`'s arguments, and apart from them main's `--config.KEY=VALUE` overrides."""
    parser.epilog = parser.epilog or OVERRIDES_HELP
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if not a.startswith('--config.')]
    if unknown:
        parser.error(f'unrecognized arguments: {" ".join(unknown)}')
    return args, rest


def load_config_arg(spec: str, overrides: Sequence[str] = ()):
    """The config a CLI names ('configs/x.py' also for an installed package) with main's
    `--config.KEY=VALUE` overrides applied and its `custom_imports` imported; what is wrong
    in it is a one-line exit naming the file, line and key."""
    from absl import flags
    from ml_collections import config_flags

    from action_jax import user_errors
    from action_jax.registry import import_custom_modules
    argv = ['tool', f'--config={spec}', *overrides]
    values = flags.FlagValues()
    # sys_argv: where config_flags looks for the overrides (sys.argv by default).
    config_flags.DEFINE_config_file('config', None, 'config file', flag_values=values,
                                    lock_config=True, sys_argv=argv)
    user_errors.parse_flags(argv, values)
    config = values['config'].value
    import_custom_modules(config)
    return config
