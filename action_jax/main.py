"""Entry point: `python -m action_jax.main --config configs/tsn_k400.py --workdir DIR`.

`--mode train` (default) trains, validates and tests; `--mode test --config.checkpoint=PATH`
evaluates a checkpoint. Any config field can be overridden: `--config.train_cfg.max_epochs=5`.
"""
import logging as std_logging
import os
import signal
import sys


def _exit_on_sigterm(signum, frame):
    # Said and done here rather than raised: a handler runs wherever the main thread is, and
    # an exception raised inside a callback (JAX's gc callback while it is imported) is printed
    # as ignored, and the run would go on.
    sys.stderr.write('action_jax.main: SIGTERM received before training started (or in test '
                     'mode): exiting, nothing to save.\n')
    sys.stderr.flush()
    os._exit(1)


# First thing, before the seconds of importing JAX: until the training loop installs its own
# handler (checkpoint, then exit), SIGTERM would otherwise end the run with 143 and no word.
signal.signal(signal.SIGTERM, _exit_on_sigterm)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from action_jax import distributed, user_errors  # noqa: E402
from action_jax.launch import WORKDIR_LOCKED_ENV, lock_workdir  # noqa: E402
from action_jax.registry import import_custom_modules  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Path to a config file with get_config().',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and the resolved config.')
flags.DEFINE_enum('mode', 'train', ['train', 'test'], 'Train (then test) or only test.')
flags.mark_flags_as_required(['config', 'workdir'])
# Packages whose INFO lines are chatter here: orbax logs every save and load step, and JAX's
# backend probe reports each platform it does not find (TPU on every CPU/GPU machine).
QUIET = ('/orbax/', 'xla_bridge.py')


def _lock(workdir: str):
    """The workdir's lock, held for the run's life, so that a second run there stops at once
    instead of overwriting this one's checkpoints. Held by process 0 (or the launcher) only:
    a multi-process job shares its workdir; a test run only reads it."""
    import jax  # after jax.distributed is up
    if FLAGS.mode != 'train' or os.environ.get(WORKDIR_LOCKED_ENV) or jax.process_index():
        return None
    return lock_workdir(workdir, 'action_jax.main')


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if FLAGS.config.deterministic:
        # Before JAX starts its backend: GPU reductions in a fixed order (CPU already is).
        os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                                   + ' --xla_gpu_deterministic_ops=true').strip()
    # Keep warnings, drop the QUIET chatter, from before JAX's backend probe (the first of it).
    # On the python_handler: ABSLHandler.handle bypasses filters added to the ABSLHandler
    # itself. (absl's own WARNING constant is 1.)
    logging.get_absl_handler().python_handler.addFilter(
        lambda record: (record.levelno >= std_logging.WARNING
                        or not any(name in record.pathname for name in QUIET)))
    distributed.initialize()
    # Before the log file: a second run must not take over the first one's log.INFO.
    lock = _lock(FLAGS.workdir)  # noqa: F841 (held until the process exits)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    logging.get_absl_handler().use_absl_log_file('log', FLAGS.workdir)
    logging.set_stderrthreshold('info')
    import_custom_modules(FLAGS.config)
    # Imported after initialisation: JAX must not touch devices before jax.distributed is up.
    from action_jax.train import loop
    if FLAGS.mode == 'train':
        loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
        # An exported model (--config.onnx/--config.tensorrt) is scored by export's step.
        from action_jax.export.deployed import deployed_eval_step
        loop.test(FLAGS.config, FLAGS.workdir, step=deployed_eval_step(FLAGS.config))


def run() -> None:
    with user_errors.exit_on_user_error():
        app.run(main, flags_parser=user_errors.parse_flags)


if __name__ == '__main__':
    run()
