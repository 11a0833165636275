"""Compile time and steady-state clips/s of the TSN-R50 train step (JAX), and MMAction2's.

    python benchmarks/train_step.py --batch 2 --segments 3 --size 224 [--steps 5] [--dtype bfloat16]

Runs on whatever JAX finds (CPU here, the GPU when there is one). Where torch and mmaction2 are
importable, the same model and shapes run through MMAction2's Recognizer2D with SGD, and the
ratio is printed.
"""
import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.config import DTYPES
from action_jax.models.io import build_recognizer
from action_jax.train import optim, sharding
from action_jax.train.step import TrainState, train_step

MODEL = dict(type='Recognizer2D',
             backbone=dict(type='ResNet', depth=50, norm_eval=False),
             cls_head=dict(type='TSNHead', num_classes=400, in_channels=2048,
                           consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.4,
                           init_std=0.01, average_clips='prob'))
OPTIM = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
             clip_grad=dict(max_norm=40.0))


def bench_jax(args) -> float:
    dtype = DTYPES[args.dtype]
    model = build_recognizer(MODEL, dtype=dtype)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    schedule = optim.build_schedule([], 0.01, 100, 1)
    tx = optim.build_optimizer(OPTIM, params, schedule)
    mesh = sharding.create_mesh()
    state = sharding.replicate(TrainState(params, rest, tx.init(params),
                                          jnp.zeros((), jnp.int32)), mesh)
    step = jax.jit(functools.partial(train_step, tx=tx, schedule=schedule),
                   static_argnums=0, donate_argnums=1)
    rng = np.random.default_rng(0)
    batch = sharding.global_batch({
        'imgs': rng.integers(0, 256, (args.batch, args.segments, args.size, args.size, 3),
                             dtype=np.uint8),
        'label': rng.integers(0, 400, (args.batch,)).astype(np.int32)}, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(graphdef, state, batch).compile()
    print(f'JAX compile: {time.perf_counter() - t0:.1f} s')
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    per_step = (time.perf_counter() - t0) / args.steps
    print(f'JAX ({jax.devices()[0].platform}, {args.dtype}): {per_step:.3f} s/step, '
          f'{args.batch / per_step:.2f} clips/s')
    return per_step


def bench_mmaction2(args) -> float | None:
    try:
        import torch
        from mmaction.registry import MODELS
        from mmaction.utils import register_all_modules
    except ImportError as e:
        print(f'MMAction2 not importable ({e}); skipping the comparison.')
        return None
    register_all_modules()
    cfg = dict(MODEL, backbone=dict(MODEL['backbone'], pretrained=None),
               data_preprocessor=dict(type='ActionDataPreprocessor', format_shape='NCHW'))
    model = MODELS.build(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, args.segments, 3, args.size, args.size)
    labels = torch.randint(0, 400, (args.batch,))

    def one_step():
        feats = model.extract_feat(x)[0]
        loss = torch.nn.functional.cross_entropy(
            model.cls_head(feats, num_segs=args.segments), labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 40)
        opt.step()
    one_step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        one_step()
    per_step = (time.perf_counter() - t0) / args.steps
    print(f'MMAction2 (torch {torch.__version__}, {torch.get_num_threads()} threads): '
          f'{per_step:.3f} s/step, {args.batch / per_step:.2f} clips/s')
    return per_step


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--segments', type=int, default=3)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
    args = parser.parse_args()
    ours = bench_jax(args)
    theirs = bench_mmaction2(args)
    if theirs:
        print(f'speed-up over MMAction2: {theirs / ours:.2f}x')


if __name__ == '__main__':
    main()
