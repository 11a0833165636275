"""`python -m action_jax.export --config CFG --checkpoint CKPT --format onnx|saved_model
--out PATH`: see action_jax/export/__init__.py for the formats and the input spec of
recognizers (TSN, TSM, I3D) and localizers (BMN, TEM, PEM)."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from action_jax import user_errors
from action_jax.apis import init_recognizer, load_config
from action_jax.export import FORMATS
from action_jax.export.signature import (check_input_shape, default_input_shape, metadata,
                                         model_kind, output_shapes, prepare_for_export,
                                         sample_shape)
from action_jax.export.verify import verify_outputs


def _batch_size(text: str) -> int | None:
    if text == 'dynamic':
        return None
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from action_jax.export.onnx import DEFAULT_OPSET
    from action_jax.export.saved_model import DEFAULT_PLATFORMS
    parser = argparse.ArgumentParser(
        prog='python -m action_jax.export',
        description='Export a TSN/TSM/I3D recognizer or a BMN/BSN (TEM, PEM) localizer to '
                    'ONNX or a TensorFlow SavedModel.')
    parser.add_argument('--config', required=True,
                        help='config file with get_config() ("path.py:arg" passes arg)')
    parser.add_argument('--checkpoint', required=True,
                        help='MMAction2 .pth, or an action_jax checkpoint directory/workdir')
    parser.add_argument('--format', choices=FORMATS, default='onnx')
    parser.add_argument('--out', required=True,
                        help='the .onnx file, or the SavedModel directory')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset (default {DEFAULT_OPSET}, read by TensorRT 8.6+)')
    parser.add_argument('--batch-size', type=_batch_size, default=None,
                        help="fixed batch size, or 'dynamic' (default)")
    parser.add_argument('--softmax', action='store_true',
                        help="recognizers: output probabilities (average_clips='prob')")
    parser.add_argument('--input-shape', type=int, nargs='+', default=None,
                        help='per-video input without batch (and channels): F H W (2D '
                             'recognizers), V T H W (3D), T C (BMN, TEM) or P C (PEM); '
                             'default: from the test pipeline / the model')
    parser.add_argument('--platforms', default=','.join(DEFAULT_PLATFORMS),
                        help='saved_model: platforms to lower for (cpu, cuda, tpu)')
    parser.add_argument('--no-verify', dest='verify', action='store_false',
                        help='skip running the exported model against the JAX model')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Exports as the arguments say; returns a summary (path, input and output shapes,
    errors)."""
    args = parse_args(argv)
    config = load_config(args.config)
    if 'compute_dtype' in config:
        config.compute_dtype = 'float32'  # engines get float32 graphs; they pick precisions
    kind = model_kind(config.model)  # a clear error for a type the exporter does not know
    # Unfused recognizers: ONNX Runtime and TensorRT fold BatchNorm themselves, and TensorRT
    # wants I3D's 3D convolutions as they are (init_recognizer's CPU rewrite is for XLA).
    model = init_recognizer(config, args.checkpoint, fuse=False, runtime='xla')
    model = prepare_for_export(model, args.softmax)
    shape = check_input_shape(model, args.input_shape or default_input_shape(model, config))
    info = metadata(model, shape)
    if args.format == 'onnx':
        from action_jax.export.onnx import export_onnx
        from action_jax.export.runtime import OnnxModel
        out = export_onnx(model, args.out, shape, batch_size=args.batch_size,
                          opset=args.opset, metadata=info)
        load = OnnxModel
    else:
        from action_jax.export.saved_model import export_saved_model, load_saved_model
        out = export_saved_model(model, args.out, shape, batch_size=args.batch_size,
                                 platforms=args.platforms.split(','), metadata=info)
        load = load_saved_model
    batch = 'N' if args.batch_size is None else args.batch_size
    summary = dict(out=out, input=[batch, *sample_shape(model, shape)],
                   layout=info['input_layout'], outputs=output_shapes(model, shape, batch))
    if kind == 'recognizer':
        summary.update(mean=info['mean'], std=info['std'], average_clips=info['average_clips'])
    if args.verify:
        sizes = [1, 3] if args.batch_size is None else [args.batch_size]
        summary['relative_errors'] = verify_outputs(load(out), model, shape, sizes)
        summary['relative_error'] = max(summary['relative_errors'].values())
    print(f'Exported {args.format} to {out}')
    if kind == 'recognizer':
        print(f"  input 'input' float32 {summary['input']} ({info['input_layout']}), RGB "
              f"normalised: (x - [{info['mean']}]) / [{info['std']}]")
        print(f"  output 'scores' float32 [{batch}, {info['num_classes']}] "
              f"(average_clips={info['average_clips']})")
    else:
        print(f"  input 'input' float32 {summary['input']} ({info['input_layout']}): "
              f"{info['input']}")
        for name, out_shape in summary['outputs'].items():
            print(f"  output '{name}' float32 {out_shape} ({info[f'output.{name}']})")
    if args.verify:
        print(f"  matches JAX: max relative error {summary['relative_error']:.1e}")
    return summary


if __name__ == '__main__':
    with user_errors.exit_on_user_error():
        main()
