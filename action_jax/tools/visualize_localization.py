"""Draw a video's ground truth against its top proposals into a PNG.

    python -m action_jax.tools.visualize_localization --ann-file data/x/anet_anno_val.json \
        --results work_dirs/bmn/results.json --video v_synthetic00060 --out v.png [--top-k 10]

`--results` is an ActivityNet proposals json (MMAction2's results.json; ids without 'v_').
Without `--video`, the first video of the annotation file that has results is drawn.
"""
from __future__ import annotations

import argparse
import json

from action_jax.localization.proposals import load_proposals_json
from action_jax.localization.visualize import draw_proposals


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ann-file', required=True, help='ActivityNet-style annotation json')
    parser.add_argument('--results', required=True, help='proposals json (results.json)')
    parser.add_argument('--video', help='video name as in the annotation file (v_...)')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--top-k', type=int, default=10)
    parser.add_argument('--width', type=int, default=900)
    args = parser.parse_args(argv)
    with open(args.ann_file) as f:
        database = json.load(f)
    results = load_proposals_json(args.results)
    video = args.video or next(name for name in database if name[2:] in results)
    if video[2:] not in results:
        raise SystemExit(f'{args.results} has no proposals for {video}')
    info = database[video]
    image = draw_proposals(info['annotations'], results[video[2:]], info['duration_second'],
                           top_k=args.top_k, width=args.width, title=video)
    image.save(args.out)
    print(f'wrote {args.out} ({video}: {len(info["annotations"])} ground-truth segments, '
          f'top {args.top_k} of {len(results[video[2:]])} proposals)')
    return args.out


if __name__ == '__main__':
    main()
