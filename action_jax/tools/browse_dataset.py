"""Save what a config's data pipeline feeds the model (after augmentation, before the
model's normalisation) for a few samples, as GIF animations or PNG frame strips (MMAction2's
browse_dataset).

    python -m action_jax.tools.browse_dataset configs/tsn_synthetic.py --out browse \
        [--split train|val|test] [--num-samples 4] [--format gif|png] [--label-map F]

Files are named `<index>_<label name>.gif|png`; a PNG strip shows every frame of the sample
(clips x crops x clip_len), its caption the label. Class names come from `--label-map`, else
from a label_map.txt beside the annotation file (as the synthetic sets have), else indices.
"""
from __future__ import annotations

import argparse
import os
import re

import numpy as np
from PIL import Image, ImageDraw

from action_jax.data.datasets import build_dataset
from action_jax.data.pipeline import Compose
from action_jax.data.readers import VideoDecodeError
from action_jax.label_map import read_label_map
from action_jax.tools import load_config_arg

# Shaping and packing only change the layout; the frames before them are what is shown.
LAYOUT_STEPS = ('FormatShape', 'PackActionInputs', 'Collect', 'ToTensor')
MIN_SIDE = 128  # small training crops are enlarged (nearest) to stay visible


def frames_of(results: dict) -> np.ndarray:
    """The pipeline's frames as uint8 [F, H, W, 3]."""
    imgs = np.asarray(results['imgs'])
    return np.clip(imgs, 0, 255).astype(np.uint8).reshape(-1, *imgs.shape[-3:])


def _enlarged(frame: np.ndarray) -> Image.Image:
    image = Image.fromarray(frame)
    scale = max(1, -(-MIN_SIDE // min(image.size)))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def save_gif(frames: np.ndarray, path: str, fps: float) -> None:
    images = [_enlarged(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=int(1000 / fps), loop=0)


def save_strip(frames: np.ndarray, path: str, caption: str, per_row: int = 8,
               gap: int = 4) -> None:
    """Frames left to right in rows of `per_row`, `gap` white pixels apart, under a caption."""
    images = [_enlarged(f) for f in frames]
    w, h = images[0].size
    columns, rows = min(per_row, len(images)), -(-len(images) // per_row)
    band = 24
    sheet = Image.new('RGB', (columns * (w + gap) - gap, band + rows * (h + gap) - gap), 'white')
    ImageDraw.Draw(sheet).text((4, 6), caption, fill='black')
    for i, image in enumerate(images):
        sheet.paste(image, ((i % per_row) * (w + gap), band + (i // per_row) * (h + gap)))
    sheet.save(path)


def class_names(label_map: str | None, dataset_cfg: dict) -> list[str] | None:
    path = label_map or os.path.join(os.path.dirname(str(dataset_cfg.get('ann_file', ''))),
                                     'label_map.txt')
    if label_map and not os.path.isfile(label_map):
        raise SystemExit(f'{label_map}: no such label map file')
    return read_label_map(path) if os.path.isfile(path) else None


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file (.py with get_config())')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--split', '--phase', choices=('train', 'val', 'test'), default='train',
                        help="whose loader's dataset and pipeline")
    parser.add_argument('--num-samples', '--show-number', type=int, default=4)
    parser.add_argument('--format', choices=('gif', 'png'), default='gif')
    parser.add_argument('--fps', type=float, default=4.0, help='GIF frame rate')
    parser.add_argument('--label-map', help='class names, one a line')
    parser.add_argument('--seed', type=int, default=0, help='seeds the random augmentation')
    args = parser.parse_args(argv)
    config = load_config_arg(args.config)
    dataset_cfg = config[f'{args.split}_dataloader'].dataset.to_dict()
    if not dataset_cfg:
        raise SystemExit(f'{args.config}: {args.split}_dataloader has no dataset')
    try:
        dataset = build_dataset(dataset_cfg)
    except FileNotFoundError as e:
        raise SystemExit(f'{args.config} ({args.split}): {e}') from None
    pipeline = Compose([t for t in dataset_cfg.get('pipeline', [])
                        if t.get('type') not in LAYOUT_STEPS])
    names = class_names(args.label_map, dataset_cfg)
    os.makedirs(args.out, exist_ok=True)
    written = []
    # Spread over the set: list files are often sorted by class.
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(args.num_samples, len(dataset)),
                                    dtype=int))
    for count, index in enumerate(indices.tolist(), 1):
        try:
            results = pipeline(dataset[index], np.random.default_rng([args.seed, index]))
        except VideoDecodeError as e:  # e.g. the config's data_prefix is not where the videos are
            raise SystemExit(f'{args.config} ({args.split}): {e}') from None
        label = int(np.asarray(results.get('label', -1)).reshape(-1)[0])
        name = names[label] if names and 0 <= label < len(names) else f'class{label}'
        safe = re.sub(r'[^\w.-]+', '_', name)
        path = os.path.join(args.out, f'{index:03d}_{safe}.{args.format}')
        frames = frames_of(results)
        if args.format == 'gif':
            save_gif(frames, path, args.fps)
        else:
            save_strip(frames, path, f'{name} (label {label}), sample {index}, '
                                     f'{args.split}: {len(frames)} frames')
        written.append(path)
        print(f'[{count}/{len(indices)}] {path}')
    return written


if __name__ == '__main__':
    main()
