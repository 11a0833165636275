"""Packages for setuptools; everything else is in setup.cfg.

`configs/` stays at the top of the checkout (docs and tests use `configs/x.py`) and is installed
as `action_jax.configs`, so that an installed package finds `--config configs/x.py`
(action_jax/config_path.py), which setup.cfg's `packages = find:` cannot express.
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=['action_jax', 'action_jax.*']) + ['action_jax.configs'],
      package_dir={'action_jax.configs': 'configs'})
