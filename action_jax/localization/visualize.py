"""Draw one video's ground-truth segments against its top proposals (PIL; PNG).

    image = draw_proposals(annotations, proposals, duration_second, top_k=10)
    image.save('video.png')

Rows from the top: a time axis in seconds, the ground-truth segments (green, with labels),
then the `top_k` proposals best first (blue, opacity by score, score and best IoU written).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from action_jax.localization.postprocess import temporal_iou

_ROW = 18
_MARGIN = 10
_LABEL_WIDTH = 120
_GT_COLOUR = (46, 139, 87)
_PROPOSAL_COLOUR = (30, 90, 200)


def _best_iou(segment: Sequence[float], annotations: Sequence[Mapping[str, Any]]) -> float:
    if not annotations:
        return 0.0
    gt = np.array([a['segment'] for a in annotations], np.float64)
    return float(temporal_iou(segment[0], segment[1], gt[:, 0], gt[:, 1]).max())


def draw_proposals(annotations: Sequence[Mapping[str, Any]],
                   proposals: Sequence[Mapping[str, Any]], duration: float, top_k: int = 10,
                   width: int = 900, title: str | None = None) -> Image.Image:
    """An RGB image of `annotations` ([{'segment', 'label'}]) and the `top_k` highest-scored
    `proposals` ([{'segment', 'score'}]) on a [0, duration] seconds axis."""
    proposals = sorted(proposals, key=lambda p: -p['score'])[:top_k]
    rows = 1 + len(annotations) + len(proposals) + (1 if title else 0)  # + the axis
    image = Image.new('RGB', (width, rows * _ROW + _ROW // 2 + 2 * _MARGIN), 'white')
    draw = ImageDraw.Draw(image, 'RGBA')
    font = ImageFont.load_default()
    left, right = _MARGIN + _LABEL_WIDTH, width - _MARGIN

    def x(t: float) -> float:
        return left + (right - left) * min(max(t / duration, 0.0), 1.0)

    y = _MARGIN
    if title:
        draw.text((_MARGIN, y), title, fill='black', font=font)
        y += _ROW
    draw.line([(left, y + _ROW - 4), (right, y + _ROW - 4)], fill='black')
    for tick in np.linspace(0, duration, 6):
        draw.line([(x(tick), y + _ROW - 8), (x(tick), y + _ROW - 4)], fill='black')
        draw.text((min(x(tick) - 10, right - 28), y), f'{tick:.0f}s', fill='black', font=font)
    y += _ROW
    for ann in annotations:
        draw.text((_MARGIN, y + 2), str(ann.get('label', 'gt'))[:18], fill=_GT_COLOUR, font=font)
        draw.rectangle([x(ann['segment'][0]), y + 2, x(ann['segment'][1]), y + _ROW - 3],
                       fill=_GT_COLOUR)
        y += _ROW
    y += _ROW // 2
    for rank, prop in enumerate(proposals, 1):
        score = float(prop['score'])
        alpha = int(60 + 195 * min(max(score, 0.0), 1.0))
        draw.text((_MARGIN, y + 2),
                  f'#{rank} {score:.2f} iou {_best_iou(prop["segment"], annotations):.2f}',
                  fill='black', font=font)
        draw.rectangle([x(prop['segment'][0]), y + 2, x(prop['segment'][1]), y + _ROW - 3],
                       fill=(*_PROPOSAL_COLOUR, alpha), outline=_PROPOSAL_COLOUR)
        y += _ROW
    return image
