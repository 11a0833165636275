"""Print a config as resolved from its file and overrides, as action_jax.main would run it.

    python -m action_jax.tools.print_config CFG [--config.x=y ...]

The overrides use main's syntax (ml_collections config_flags): ``--config.train_cfg.max_epochs=5``,
``--config.train_dataloader.dataset.data_prefix.video=DIR``.
"""
import sys

from absl import app, flags
from ml_collections import config_flags

from action_jax import user_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Path to a config file with get_config().',
                                lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if FLAGS.config is None:
        raise app.UsageError('give a config file: print_config CFG [--config.x=y ...]')
    print(FLAGS.config)


def _with_config_flag(argv: list[str]) -> list[str]:
    """``print_config CFG ...`` -> ``print_config --config=CFG ...`` (CFG first, as in --help)."""
    if len(argv) > 1 and not argv[1].startswith('-'):
        return [argv[0], f'--config={argv[1]}', *argv[2:]]
    return argv


if __name__ == '__main__':
    app.run(main, argv=_with_config_flag(sys.argv), flags_parser=user_errors.parse_flags)
