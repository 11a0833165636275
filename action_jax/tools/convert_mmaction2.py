"""Converts an MMAction2 checkpoint (.pth) into an action_jax checkpoint.

    python -m action_jax.tools.convert_mmaction2 IN.pth --config CFG --out DIR

The model is built from CFG's `model` dict and filled strictly (missing or unexpected keys are
listed by name). DIR then works wherever a checkpoint is taken: `--config.checkpoint=DIR`
(test mode), `--config.load_from=DIR`, `init_recognizer(config, DIR)`. The .pth is read with
`torch.load(weights_only=True)`: no pickled code runs.
"""
import argparse
import os

from action_jax.apis import load_config
from action_jax.models.io import build_recognizer, load_weights, save_weights


def convert(pth: str, config, out: str) -> str:
    """Writes `out/checkpoints/0/state` ({'params', 'rest'}) and returns that step directory."""
    model = build_recognizer(config.model, seed=config.seed)
    load_weights(model, pth)
    return save_weights(model, os.path.join(out, 'checkpoints', '0'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='MMAction2 .pth file')
    parser.add_argument('--config', required=True,
                        help='config file (get_config(); "file.py:arg" passes an argument)')
    parser.add_argument('--out', required=True, help='output directory')
    args = parser.parse_args(argv)
    step_dir = convert(args.checkpoint, load_config(args.config), args.out)
    print(f'Wrote {step_dir}')


if __name__ == '__main__':
    main()
