"""Builds MMAction2-style pipelines (`[dict(type='SampleFrames', ...), ...]`) into one callable."""
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from action_jax.data import decoding, transforms
from action_jax.registry import lookup

# The whole registry (action_jax/registry.py): the names used in configs -> classes.
TRANSFORMS: dict[str, Callable[..., Any]] = {**transforms.TRANSFORMS, **decoding.TRANSFORMS}
# The localizers' and the packed data's transforms, imported on first use.
LAZY_TRANSFORMS = {
    **dict.fromkeys(('LoadLocalizationFeature', 'GenerateLocalizationLabels', 'LoadProposals',
                     'PackLocalizationInputs'), 'action_jax.localization.data'),
    **dict.fromkeys(('PackedInit', 'PackedDecode'), 'action_jax.data.packed'),
}


def build_transform(cfg: Mapping[str, Any]):
    """Instantiates one transform from `dict(type=name, **kwargs)`."""
    kwargs = dict(cfg)
    name = kwargs.pop('type', None)
    cls = lookup(TRANSFORMS, LAZY_TRANSFORMS, name, f'transform {dict(cfg)}', 'transform')
    try:
        return cls(**kwargs)
    except TypeError as e:  # an unknown or missing argument: name the transform
        raise TypeError(f'{name}: {e}') from e


class Compose:
    """Applies transforms in order; random ones draw from the one per-sample `rng`."""

    def __init__(self, pipeline: Sequence[Mapping[str, Any] | Callable]):
        self.transforms = [t if callable(t) else build_transform(t) for t in pipeline]

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        for t in self.transforms:
            results = t(results, rng)
        return results

    def __repr__(self) -> str:
        inner = ',\n    '.join(repr(t) for t in self.transforms)
        return f'Compose(\n    {inner})'
