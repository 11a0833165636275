"""`python -m action_jax.export --config CFG --checkpoint CKPT --format onnx|saved_model
--out PATH`: see action_jax/export/__init__.py for the formats and the input spec."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from action_jax.apis import as_dict, init_recognizer, load_config
from action_jax.export import (FORMATS, check_input_shape, input_shape_from_pipeline, metadata,
                               prepare_for_export, verify)


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
        description='Export a TSN/TSM/I3D recognizer to ONNX or a TensorFlow SavedModel.')
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
                        help="output probabilities (average_clips='prob')")
    parser.add_argument('--input-shape', type=int, nargs='+', default=None,
                        help='per-video input without batch and channels: F H W (2D models) '
                             'or V T H W (3D); default: from the test pipeline')
    parser.add_argument('--platforms', default=','.join(DEFAULT_PLATFORMS),
                        help='saved_model: platforms to lower for (cpu, cuda, tpu)')
    parser.add_argument('--no-verify', dest='verify', action='store_false',
                        help='skip running the exported model against the JAX model')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Exports as the arguments say; returns a summary (path, input shape, error)."""
    args = parse_args(argv)
    config = load_config(args.config)
    if 'compute_dtype' in config:
        config.compute_dtype = 'float32'  # engines get float32 graphs; they pick precisions
    model = prepare_for_export(init_recognizer(config, args.checkpoint), args.softmax)
    shape = check_input_shape(model, args.input_shape or input_shape_from_pipeline(
        config.test_dataloader.dataset.pipeline))
    info = metadata(model, as_dict(config.model), shape)
    if args.format == 'onnx':
        from action_jax.export.onnx import export_onnx
        from action_jax.export.runtime import OnnxRecognizer
        out = export_onnx(model, args.out, shape, batch_size=args.batch_size,
                          opset=args.opset, metadata=info)
        load = OnnxRecognizer
    else:
        from action_jax.export.saved_model import export_saved_model, load_saved_model
        out = export_saved_model(model, args.out, shape, batch_size=args.batch_size,
                                 platforms=args.platforms.split(','), metadata=info)
        load = load_saved_model
    batch = 'N' if args.batch_size is None else args.batch_size
    summary = dict(out=out, input=[batch, *shape, 3], layout=info['input_layout'],
                   mean=info['mean'], std=info['std'], average_clips=info['average_clips'])
    if args.verify:
        sizes = [1, 3] if args.batch_size is None else [args.batch_size]
        summary['relative_error'] = verify(load(out), model, shape, sizes)
    print(f'Exported {args.format} to {out}')
    print(f"  input 'input' float32 {summary['input']} ({info['input_layout']}), RGB "
          f"normalised: (x - [{info['mean']}]) / [{info['std']}]")
    print(f"  output 'scores' float32 [{batch}, {info['num_classes']}] "
          f"(average_clips={info['average_clips']})")
    if args.verify:
        print(f"  matches JAX: max relative error {summary['relative_error']:.1e}")
    return summary


if __name__ == '__main__':
    main()
