"""One figure for benchmarks/gpu_check.sh: clips/s and peak device memory of the TSN-R50 train
step (train_step.py) or of a fused recognizer's inference (inference.py), printed as a row
of RESULTS.md's GPU table. One run per process, so the peak is that run's.

    python benchmarks/gpu_figures.py train --dtype bfloat16 --batch 32 --frames 8
    python benchmarks/gpu_figures.py inference --model i3d --dtype float32 --batch 8
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inference  # noqa: E402
import train_step  # noqa: E402


def peak_gib(device) -> str:
    """Peak bytes in use on the device (GPU/TPU; the CPU backend keeps no statistics)."""
    stats = device.memory_stats() or {}
    return f'{stats["peak_bytes_in_use"] / 2**30:.2f}' if 'peak_bytes_in_use' in stats else 'n/a'


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('what', choices=['train', 'inference'])
    parser.add_argument('--model', default='tsn', choices=list(inference.CONFIGS))
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
    parser.add_argument('--batch', type=int, default=8, help='clips per step or call')
    parser.add_argument('--frames', type=int, default=8,
                        help='frames (TSN/TSM) or views per clip; I3D takes 32-frame clips')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--iters', type=int, default=10, help='timed steps or calls')
    parser.add_argument('--label', default='', help='what the row measures, if special')
    args = parser.parse_args(argv)

    import jax
    device = jax.devices()[0]
    # I3D: inference.py's clip length, 32 frames at full size (8 in smoke runs).
    i3d_frames = 32 if args.size >= 112 else 8
    frames = i3d_frames if args.model == 'i3d' and args.what == 'inference' else args.frames
    with contextlib.redirect_stdout(io.StringIO()):  # the scripts' own lines; the row is ours
        if args.what == 'train':
            run, _, _ = train_step.jax_step('tsn', types.SimpleNamespace(
                batch=args.batch, segments=args.frames, size=args.size, dtype=args.dtype))
            seconds = train_step.median_seconds(run, args.iters)
            model = 'tsn'
        else:
            variant = 'fused_bf16' if args.dtype == 'bfloat16' else 'fused'
            result = inference.jax_worker(types.SimpleNamespace(
                models=[args.model], variants=[variant], batch=args.batch, size=args.size,
                frames=args.frames, i3d_frames=i3d_frames,
                iters=args.iters, seed=0))
            seconds = statistics.median(result[f'{args.model}/{variant}']['times'])
            model = args.model
    row = (f'| {device.device_kind} | {args.what} | {model.upper()}-R50 | {args.dtype} | '
           f'{args.batch} x {frames} x {args.size}² | {args.batch / seconds:.1f} | '
           f'{peak_gib(device)} | {args.label} |')
    print(row)
    return row


if __name__ == '__main__':
    main()
