"""Inference throughput of exported recognizers: onnxruntime vs JAX (jit), clips/s.

    python benchmarks/export_inference.py                  # small inputs (quick on a CPU)
    python benchmarks/export_inference.py --full           # MMAction2's sizes: 224 px, TSN/TSM
                                                           # 8 segments, I3D 32 frames
    python benchmarks/export_inference.py --models tsm --batch 4 --iters 20

Models are ResNet-50 TSN, TSM and I3D as in MMAction2's Kinetics-400 configs, with random
weights (throughput does not depend on them). A clip is one model input of one video:
[segments, H, W, 3] for TSN/TSM, [1, frames, H, W, 3] for I3D. Each model is exported with
action_jax.export (dynamic batch, opset 17) and both runtimes get the same inputs; the table
also gives their largest relative difference. Run on the machine and threads you care about
(onnxruntime uses all cores by default; JAX/XLA too).
"""
import argparse
import os
import sys
import tempfile
import time

import jax
import numpy as np
from flax import nnx

from action_jax.export.signature import prepare_for_export
from action_jax.export.verify import max_relative_error
from action_jax.export.onnx import DEFAULT_OPSET, export_onnx
from action_jax.export.runtime import OnnxModel
from action_jax.models.io import build_recognizer

NUM_CLASSES = 400


def model_cfg(name: str, segments: int) -> dict:
    """MMAction2's K400 ResNet-50 TSN / TSM / I3D model dicts."""
    head = dict(num_classes=NUM_CLASSES, in_channels=2048, spatial_type='avg',
                average_clips='prob')
    if name == 'tsn':
        return dict(type='Recognizer2D', backbone=dict(type='ResNet', depth=50),
                    cls_head=dict(type='TSNHead', dropout_ratio=0.4, **head,
                                  consensus=dict(type='AvgConsensus', dim=1)))
    if name == 'tsm':
        return dict(type='Recognizer2D',
                    backbone=dict(type='ResNetTSM', depth=50, num_segments=segments,
                                  shift_div=8),
                    cls_head=dict(type='TSMHead', num_segments=segments, dropout_ratio=0.5,
                                  init_std=0.001, is_shift=True, **head,
                                  consensus=dict(type='AvgConsensus', dim=1)))
    if name == 'i3d':
        return dict(type='Recognizer3D',
                    backbone=dict(type='ResNet3d', depth=50, pretrained2d=True,
                                  conv1_kernel=(5, 7, 7), conv1_stride_t=2, pool1_stride_t=2,
                                  inflate=((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0),
                                           (0, 1, 0)), zero_init_residual=False),
                    cls_head=dict(type='I3DHead', dropout_ratio=0.5, **head))
    raise ValueError(f'unknown model {name!r}')


def clips_per_second(run, x: np.ndarray, iters: int) -> float:
    run(x)  # warm-up (compilation for JAX, allocation for onnxruntime)
    start = time.perf_counter()
    for _ in range(iters):
        run(x)
    return iters * len(x) / (time.perf_counter() - start)


def benchmark(name: str, args: argparse.Namespace, out_dir: str) -> dict:
    input_shape = ((1, args.i3d_frames) if name == 'i3d' else (args.segments,)) + \
        (args.size, args.size)
    model = prepare_for_export(build_recognizer(model_cfg(name, args.segments)))
    runner = OnnxModel(export_onnx(model, os.path.join(out_dir, f'{name}.onnx'),
                                        input_shape, opset=args.opset))
    jitted = nnx.jit(lambda m, x: m.predict_scores(x))

    def run_jax(x: np.ndarray) -> np.ndarray:
        return np.asarray(jax.block_until_ready(jitted(model, x)))

    x = np.random.default_rng(0).standard_normal((args.batch, *input_shape, 3),
                                                 dtype=np.float32)
    return dict(model=name.upper(), input=f'{args.batch}x' + 'x'.join(map(str, input_shape)),
                jax=clips_per_second(run_jax, x, args.iters),
                onnxruntime=clips_per_second(runner, x, args.iters),
                error=max_relative_error(runner(x), run_jax(x)))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['tsn', 'tsm', 'i3d'],
                        choices=['tsn', 'tsm', 'i3d'])
    parser.add_argument('--full', action='store_true',
                        help='224 px, 8 segments, I3D 32 frames (MMAction2 test clip sizes)')
    parser.add_argument('--size', type=int, default=112)
    parser.add_argument('--segments', type=int, default=8, help='TSN/TSM frames per clip')
    parser.add_argument('--i3d-frames', type=int, default=16)
    parser.add_argument('--batch', type=int, default=1, help='clips per call')
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    args = parser.parse_args(argv)
    if args.full:
        args.size, args.segments, args.i3d_frames = 224, 8, 32
    print(f'JAX {jax.__version__} on {jax.devices()[0].device_kind}; '
          f'{os.cpu_count()} CPUs; Python {sys.version.split()[0]}')
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for name in args.models:
            rows.append(benchmark(name, args, out_dir))
            row = rows[-1]
            if len(rows) == 1:
                print(f'{"model":6} {"input (NxTxHxW)":18} {"JAX clips/s":>12} '
                      f'{"ORT clips/s":>12} {"ORT/JAX":>8} {"rel. diff":>10}')
            print(f'{row["model"]:6} {row["input"]:18} {row["jax"]:12.2f} '
                  f'{row["onnxruntime"]:12.2f} {row["onnxruntime"] / row["jax"]:8.2f} '
                  f'{row["error"]:10.1e}', flush=True)
    return rows


if __name__ == '__main__':
    main()
