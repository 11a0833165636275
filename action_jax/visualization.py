"""Figures shared by the analysis tools: matplotlib on the Agg backend (no display needed),
saved as PNG, SVG or PDF by the file's extension."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

FORMATS = ('.png', '.svg', '.pdf')


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("pictures need matplotlib: pip install 'action_jax[vis]'") from None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def figure(panels: int = 1, title: str | None = None, panel_size=(6.4, 4.2)):
    """A figure of `panels` side-by-side axes (a list even for one)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, panels, figsize=(panel_size[0] * panels, panel_size[1]),
                             squeeze=False)
    if title:
        fig.suptitle(title)
    return fig, list(axes[0])


def save_figure(fig, path: str, dpi: int = 100) -> None:
    if os.path.splitext(path)[1].lower() not in FORMATS:
        raise SystemExit(f'{path}: give a file name ending in {", ".join(FORMATS)}')
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], title: str,
                          normalized: bool):
    """A confusion matrix (rows: true class, columns: predicted) with its values written in
    the cells while they stay legible (up to 30 classes)."""
    n = len(classes)
    size = min(max(4.0, 0.45 * n + 2.5), 24.0)
    fig, (ax,) = figure(1, panel_size=(size + 1.2, size))
    image = ax.imshow(cm, cmap='Blues', vmin=0, vmax=1 if normalized else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), classes, rotation=45 if n > 4 else 0, ha='right' if n > 4 else 'center')
    ax.set_yticks(range(n), classes)
    ax.set_xlabel('predicted label')
    ax.set_ylabel('true label')
    ax.set_title(title)
    if n <= 30:
        threshold = (cm.max() if cm.size else 0) / 2
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f'{cm[i, j]:.2f}' if normalized else f'{int(cm[i, j])}',
                        ha='center', va='center', fontsize=8,
                        color='white' if cm[i, j] > threshold else 'black')
    return fig
