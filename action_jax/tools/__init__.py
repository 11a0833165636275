"""Command-line tools: `python -m action_jax.tools.NAME --help`."""


def load_config_arg(spec: str):
    """The config a CLI names ('configs/x.py' also for an installed package), its
    `custom_imports` imported, or a one-line exit naming the file, line and key of what is
    wrong in it."""
    from action_jax import user_errors
    from action_jax.registry import import_custom_modules
    with user_errors.exit_on_user_error():
        config = user_errors.load_config_checked(spec)
    import_custom_modules(config)
    return config
