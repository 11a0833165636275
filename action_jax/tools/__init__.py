"""Command-line tools: `python -m action_jax.tools.NAME --help`."""


def load_config_arg(path: str):
    """The config a CLI names, or a one-line exit for a missing file or get_config()."""
    from action_jax.apis import load_config
    try:
        return load_config(path)
    except (FileNotFoundError, AttributeError) as e:
        raise SystemExit(str(e)) from None
