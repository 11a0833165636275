"""What an exporter needs to know about a model's test-mode prediction, told by the model.

Recognizers and localizers provide
  export_spec()            an ExportSpec: the input's layouts and meaning, the named outputs,
                           the input shape the model implies, metadata for the exported file;
  export_outputs(x)        the float32 outputs for the exported input x, in spec order;
  prepare_export(softmax)  the model set up for export, in place;
so that action_jax/export never inspects a model's layers.
"""
from typing import NamedTuple


class Output(NamedTuple):
    name: str
    layout: str   # e.g. 'N,T'
    meaning: str


class ExportSpec(NamedTuple):
    """A model's exported signature.

    kind          'recognizer' or 'localizer' (the metadata key naming the model type)
    model         the model type ('Recognizer2D', 'BMN', ...)
    layouts       {rank of a per-video input shape: its layout}; the per-video shape leaves
                  out the batch and the trailing `channels`
    input         what the input holds
    outputs       the Outputs, in graph order
    channels      dims every input ends with beyond the per-video shape (RGB's (3,))
    shape         the per-video shape the model implies; None where the test pipeline tells:
                  all of it (shape None: SampleFrames, crops, FormatShape) or, for a
                  'proposals' entry, LoadProposals' top_k
    fixed         per entry of `shape`, why the model needs exactly that size (a message with
                  {expected} and {actual}), or None where any size goes
    metadata      further entries for the exported file
    """
    kind: str
    model: str
    layouts: dict[int, str]
    input: str
    outputs: tuple[Output, ...]
    channels: tuple[int, ...] = ()
    shape: tuple[int | str | None, ...] | None = None
    fixed: tuple[str | None, ...] = ()
    metadata: dict[str, str] = {}


# Localizers: features in, as the pipeline loads them.
FEATURES_FIXED = 'it takes {expected} features, not {actual}'
FEATURES_METADATA = {'normalization': 'none (features as the pipeline loads them)'}
STEPS_INPUT = 'T steps x C features (LoadLocalizationFeature)'


def localizer_export_mode(model, softmax: bool) -> None:
    """A localizer's prepare_export: eval mode; its outputs are probabilities already."""
    if softmax:
        raise ValueError('--softmax is for recognizers; localizers output probabilities')
    model.eval()
