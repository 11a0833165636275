"""Write the synthetic localization set (feature csvs + ActivityNet-style annotation json).

    python -m action_jax.tools.make_synthetic_localization --out data/synthetic_localization
        [--num-videos 64] [--temporal-dim 32] [--feat-dim 16] [--seed 0]

See action_jax/localization/synthetic.py for the contents and the layout.
"""
from __future__ import annotations

import argparse
import time

from action_jax.localization.synthetic import make_synthetic_localization


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--num-videos', type=int, default=64)
    parser.add_argument('--temporal-dim', type=int, default=32, help='feature steps per video')
    parser.add_argument('--feat-dim', type=int, default=16, help='feature channels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--val-fraction', type=float, default=0.25)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    info = make_synthetic_localization(args.out, num_videos=args.num_videos,
                                       temporal_dim=args.temporal_dim, feat_dim=args.feat_dim,
                                       seed=args.seed, val_fraction=args.val_fraction)
    print(f'wrote {info["num_videos"]} videos ({args.temporal_dim} x {args.feat_dim} features) '
          f'to {args.out} in {time.perf_counter() - start:.1f} s')
    return info


if __name__ == '__main__':
    main()
