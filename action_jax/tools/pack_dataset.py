"""Pack the videos of an MMAction2 list file into ArrayRecord shards of JPEG frames.

    python -m action_jax.tools.pack_dataset LIST --data-prefix DIR --out PACK_DIR
        [--short-side 256] [--workers N] [--quality 95] [--ext .jpg|.png] [--overwrite]

Then train from it with dict(type='PackedDataset', ann_file=LIST,
data_prefix=dict(packed=PACK_DIR)) and PackedInit/PackedDecode in place of
DecordInit/DecordDecode (see action_jax/data/packed.py).  Unreadable videos are skipped,
reported and left out of the index.  Re-running on a complete pack made with the same list and
options does nothing; an interrupted run leaves only temporary files, which are never reused.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys


from action_jax.data import packed
from action_jax.progress import bar


def _list_videos(text: str, delimiter: str | None) -> list[str]:
    """The video paths (first fields) of a list file's text, as written; labels are not
    needed."""
    return [line.strip().split(delimiter)[0].strip() for line in text.splitlines()
            if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('ann_file', metavar='LIST', help="MMAction2 video list ('path label')")
    parser.add_argument('--data-prefix', default='', help='directory the list paths are in')
    parser.add_argument('--out', required=True, help='pack directory (new or empty)')
    parser.add_argument('--short-side', type=int, help='resize frames to this short side')
    parser.add_argument('--ext', default='.jpg', choices=packed.EXTENSIONS,
                        help='frame format: .jpg, or lossless .png (bit-exact, larger)')
    parser.add_argument('--quality', type=int, default=95, help='JPEG quality, 1-100')
    parser.add_argument('--workers', type=int, default=os.cpu_count(),
                        help='decoding processes (0: this one)')
    parser.add_argument('--shard-mb', type=int, default=1024, help='shard size in MiB')
    parser.add_argument('--delimiter', help='list field separator (default: whitespace)')
    parser.add_argument('--overwrite', action='store_true',
                        help="replace an existing (complete or incomplete) pack's files")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (OSError, ValueError) as exc:  # user errors: one line, no traceback
        print(f'pack_dataset: error: {exc}', file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    with open(args.ann_file, 'rb') as f:
        data = f.read()
    list_sha1 = hashlib.sha1(data).hexdigest()
    videos = _list_videos(data.decode(), args.delimiter)
    source = dict(ann_file=os.path.abspath(args.ann_file), sha1=list_sha1,
                  data_prefix=os.path.abspath(args.data_prefix))
    options = packed.pack_options(args.short_side, args.ext, args.quality)
    state = packed.pack_state(args.out)
    if state == 'foreign':
        raise ValueError(f'{args.out} holds files that are not a pack; choose an empty --out')
    if state == 'complete' and not args.overwrite:
        index = packed.read_index(args.out)
        made_with = dict(**{k: index.get(k) for k in options},
                         **{k: index['source'].get(k) for k in ('sha1', 'data_prefix')})
        if made_with != dict(**options, sha1=list_sha1, data_prefix=source['data_prefix']):
            raise ValueError(f'{args.out} holds a pack of another list or options '
                             f'({made_with}); use another --out or --overwrite')
        print(f'{args.out} is already packed ({len(index["videos"])} videos, '
              f'{len(index["skipped"])} skipped): nothing to do')
        return 0
    if state == 'incomplete' and not args.overwrite:
        raise ValueError(f'{args.out} holds an incomplete pack (an interrupted run?); '
                         'rerun with --overwrite to start again')
    if state in ('complete', 'incomplete'):
        packed.remove_pack(args.out)

    with bar('Packing videos', total=len(dict.fromkeys(videos))) as advance:
        index = packed.pack_videos(videos, args.data_prefix, args.out,
                                   short_side=args.short_side, ext=args.ext,
                                   quality=args.quality, workers=args.workers,
                                   shard_bytes=args.shard_mb << 20, source=source,
                                   on_video=lambda key, error: advance())
    frames = sum(v['frames'] for v in index['videos'].values())
    print(f'packed {len(index["videos"])} videos ({frames} frames) into '
          f'{len(index["shards"])} shards in {args.out}; {len(index["skipped"])} skipped')
    for key, reason in index['skipped'].items():
        print(f'  skipped {key}: {reason}')
    if not index['videos']:
        # An empty pack would make the re-run with the right --data-prefix do nothing.
        packed.remove_pack(args.out)
        print(f'pack_dataset: error: no video of {args.ann_file} could be read from '
              f'{args.data_prefix or "."} (is --data-prefix the directory its paths are in?)',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
