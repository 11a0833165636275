"""Write the synthetic action data set (videos, MMAction2 list files, label map).

    python -m action_jax.tools.make_synthetic --out data/synthetic [--num-videos 480]
        [--seed 0] [--rawframes] [--width 64 --height 64 --frames 16 --fps 8]

See action_jax/data/synthetic.py for the classes and the layout.
"""
from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

from action_jax.data.synthetic import make_synthetic


def main(argv: list[str] | None = None) -> dict:
    defaults = {name: p.default
                for name, p in inspect.signature(make_synthetic).parameters.items()}
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--num-videos', type=int, default=defaults['num_videos'],
                        help='total videos, rounded down to a multiple of the 8 classes')
    parser.add_argument('--seed', type=int, default=defaults['seed'])
    parser.add_argument('--rawframes', action='store_true',
                        help='also write extracted JPEG frames and their list files')
    parser.add_argument('--width', type=int, default=defaults['width'])
    parser.add_argument('--height', type=int, default=defaults['height'])
    parser.add_argument('--frames', type=int, default=defaults['frames'],
                        help='frames per video')
    parser.add_argument('--fps', type=float, default=defaults['fps'])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    info = make_synthetic(args.out, num_videos=args.num_videos, seed=args.seed,
                          rawframes=args.rawframes, width=args.width, height=args.height,
                          frames=args.frames, fps=args.fps)
    counts = {split: len(Path(entry['ann_file']).read_text().splitlines())
              for split, entry in info['videos'].items()}
    print(f'wrote {counts} videos of {len(info["class_names"])} classes to {args.out} '
          f'in {time.perf_counter() - start:.1f} s')
    return info


if __name__ == '__main__':
    main()
