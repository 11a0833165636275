"""Inference clips/s of TSN, TSM and I3D (ResNet-50, K400 configs): JAX variants vs PyTorch.

    python benchmarks/inference.py                       # TSN/TSM 1x8x224², I3D 1x32x224²
    python benchmarks/inference.py --small               # 64 px, 4 frames (I3D 8): quick
    python benchmarks/inference.py --models tsn --variants plain fused \
        --flags default onednn ynn_conv --rounds 3 --iters 5
    python benchmarks/inference.py --list-flags          # the XLA flag sets below
    python benchmarks/inference.py --quick               # fused JAX, onnxruntime, torch
    PYTHONPATH=.mmaction2 python benchmarks/inference.py  # against MMAction2 itself

    from inference import measure, print_table          # from another benchmark script
    print_table(measure(['tsn', 'tsm'], iters=3, rounds=1))

JAX variants (all jit-compiled `predict` in eval mode, but the first):
  init_recognizer  the fused model as init_recognizer returns it (apis.with_runtime:
              compiled; on CPU TSN's and TSM's backbone on onnxruntime, cpu_inference.py)
  plain       float32, conv -> BatchNorm as trained
  fold_only   float32, BatchNorm folded into the convs (fuse_conv_bn(conv3d_as_2d=False))
  fused       float32, action_jax.models.fuse.fuse_conv_bn: BatchNorm folded, and I3D's
              (1,k,k)/(k,1,1) 3D convs run as 2D convs (same as fold_only for TSN/TSM)
  bf16        bfloat16 compute (float32 parameters), BatchNorm kept
  fused_bf16  both
  fused_dot1x1 fused, and the 1x1 convolutions computed as matmuls (train_step.py's
              conv_1x1_as_dot)
  onnxruntime the fused model exported to ONNX (action_jax.export.cache: exported once,
              then reused from ~/.cache/action_jax/onnx) on onnxruntime's CPU provider
Each XLA flag set (`--flags`, see FLAG_SETS) runs in its own process, since XLA reads
XLA_FLAGS once. The PyTorch reference is MMAction2's model where `mmaction` is importable,
otherwise a minimal torch.nn mirror of the same network built here (ConvModule, Bottleneck,
TSM's TemporalShift, ResNet3d, the heads: MMAction2's structure and state_dict key names),
NCHW float32 under torch.no_grad(), as MMAction2's test step runs it. Both sides get the same
random weights (BatchNorm statistics randomised too, so folding is not trivial) and the same
input; the table gives the largest difference of the class scores relative to the JAX
float32 ones.

Measurement: every process compiles its variants first, then times them round-robin, one
call each, `--iters` times; `--rounds` repeats all processes in turn (flag sets and torch
interleaved), and the table reports the median call time over all rounds, as clips/s
(= batch / time) and as the ratio to PyTorch. Run on an otherwise idle machine for stable
numbers; the load average is printed.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = {'tsn': 'configs/tsn_k400.py', 'tsm': 'configs/tsm_k400.py',
           'i3d': 'configs/i3d_k400.py'}
VARIANTS = ('init_recognizer', 'plain', 'fold_only', 'fused', 'bf16', 'fused_bf16',
            'fused_dot1x1', 'onnxruntime')
# What init_recognizer runs on CPU, and the XLA model it starts from.
QUICK_VARIANTS = ('init_recognizer', 'fused')

# XLA:CPU flags of jaxlib 0.10.2 worth trying (`XLA_FLAGS=--help python -c 'import jax;
# jax.numpy.zeros(1)'` lists them all). The library fusion lists take dot, eltwise, reduce,
# individual_dot, individual_convolution; '+x'/'-x' adds to/removes from the default list.
# By default jaxlib 0.10.2 runs every convolution as a YNNPACK fusion (`ynn_fusion` in the
# compiled HLO), with the bias/BatchNorm/ReLU that follows as a separate loop fusion; our jits
# switch to the Eigen kernels (action_jax/xla_options.py) unless XLA_FLAGS names the option.
FLAG_SETS = {
    'default': '',
    # XLA's own default, YNNPACK convolutions (what action_jax ran before xla_options).
    'ynn_conv': '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution',
    # YNNPACK also takes the elementwise epilogue (bias, ReLU, residual add) into the conv.
    'ynn_eltwise': '--xla_cpu_experimental_ynn_fusion_type=+eltwise',
    # Convolutions back to XLA's own (Eigen) kernels instead of YNNPACK.
    'no_ynn_conv': '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',
    'no_xnnpack': '--xla_cpu_use_xnnpack=false',
    # Deprecated in this XLA (the thunk runtime is the only one); kept to show it is a no-op.
    'thunk_off': '--xla_cpu_use_thunk_runtime=false',
    'onednn': '--xla_cpu_use_onednn=true',
    'onednn_cc': '--xla_cpu_experimental_onednn_custom_call=true',
    'xnn_conv': '--xla_cpu_experimental_xnn_fusion_type=individual_convolution,dot,eltwise',
    'xnn_graph': '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY',
    'onednn+xnn_graph': '--xla_cpu_use_onednn=true '
                        '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY',
    'fast_math': '--xla_cpu_enable_fast_math=true',
}


# --------------------------------------------------------------------------- models

def config_module(name: str):
    """`configs/<name>_k400.py` as a module (its pipelines are module-level lists)."""
    spec = importlib.util.spec_from_file_location(f'{name}_k400', REPO / CONFIGS[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_cfg(name: str, frames: int) -> dict:
    """The K400 config's model dict (`configs/<name>_k400.py`), for `frames` per clip."""
    from action_jax.config import as_dict
    cfg = as_dict(config_module(name).get_config().model)
    if name == 'tsm':
        cfg['backbone'] = dict(cfg['backbone'], num_segments=frames)
        cfg['cls_head'] = dict(cfg['cls_head'], num_segments=frames)
    return cfg


def input_shape(name: str, args) -> tuple[int, ...]:
    """Channels-last model input: [N, F, H, W, 3] (2D) or [N, 1 view, T, H, W, 3] (I3D)."""
    if name == 'i3d':
        return (args.batch, 1, args.i3d_frames, args.size, args.size, 3)
    return (args.batch, args.frames, args.size, args.size, 3)


def build_jax_model(name: str, args, dtype=None):
    """Random weights (seeded) with randomised BatchNorm statistics and affine parameters."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from action_jax.models.io import build_recognizer

    model = build_recognizer(model_cfg(name, args.frames), seed=args.seed,
                             dtype=dtype or jnp.float32)
    rng = np.random.default_rng(args.seed)
    for _, bn in sorted(nnx.iter_modules(model), key=lambda item: str(item[0])):
        if isinstance(bn, nnx.BatchNorm):
            n = bn.num_features
            bn.mean[...] = jnp.asarray(rng.normal(0, 0.1, n), jnp.float32)
            bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, n), jnp.float32)
            bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, n), jnp.float32)
            bn.bias[...] = jnp.asarray(rng.normal(0, 0.1, n), jnp.float32)
    model.eval()
    model.max_testing_views = None  # throughput: all views at once (chunking saves memory)
    return model


def make_input(name: str, args):
    import numpy as np
    return np.random.default_rng(args.seed + 1).standard_normal(
        input_shape(name, args), dtype=np.float32)


# --------------------------------------------------------------------------- workers

def timed(result: dict, call) -> None:
    """Appends the wall time and the process CPU time (all threads) of `call()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    result['times'].append(time.perf_counter() - wall)
    result['cpu_times'].append(time.process_time() - cpu)


def pin_threads(threads: int) -> None:
    """Restricts this process to the first `threads` of its CPUs (XLA sizes its thread pool
    from the affinity mask; torch gets set_num_threads)."""
    if threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])


def jax_worker(args) -> dict:
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from action_jax.models.fuse import fuse_conv_bn

    results = {}
    runs = []
    for name in args.models:
        x = jnp.asarray(make_input(name, args))
        plain = build_jax_model(name, args)
        for variant in args.variants:
            if variant.endswith('bf16'):
                model = build_jax_model(name, args, dtype=jnp.bfloat16)
                nnx.update(model, nnx.state(plain))  # the same float32 weights
            else:
                model = plain
            if variant == 'fold_only':
                model = fuse_conv_bn(model, conv3d_as_2d=False)
            elif variant.startswith('fused') or variant in ('onnxruntime', 'init_recognizer'):
                model = fuse_conv_bn(model)
            if variant.endswith('dot1x1'):
                from train_step import convs_1x1_as_dots
                convs_1x1_as_dots(model)
            start = time.perf_counter()
            call = {'onnxruntime': onnxruntime_call,
                    'init_recognizer': init_recognizer_call}.get(variant, jitted_call)(model, x)
            scores = call()
            results[f'{name}/{variant}'] = dict(
                compile_s=time.perf_counter() - start, times=[], cpu_times=[],
                scores=np.asarray(scores, np.float32).ravel().tolist())
            runs.append((f'{name}/{variant}', call))
    for _ in range(args.iters):
        for key, call in runs:
            timed(results[key], call)
    return results


def jitted_call(model, x):
    """() -> the class scores of the jit-compiled model on x."""
    import jax
    from flax import nnx

    from action_jax import xla_options

    graphdef, state = nnx.split(model)

    @xla_options.jit
    def forward(state, x):
        m = nnx.merge(graphdef, state)
        scores = m(x)
        return scores, m.cls_head.predict_by_feat(scores, x.shape[0])

    return lambda: jax.block_until_ready(forward(state, x))[0]


def init_recognizer_call(model, x):
    """() -> the class scores of `model` made what init_recognizer returns for JAX's default
    device (on CPU: TSN's and TSM's backbone on onnxruntime)."""
    import jax

    from action_jax.apis import with_runtime
    from action_jax.models.compiled import compile_on_call

    model = with_runtime(compile_on_call(model))
    return lambda: jax.block_until_ready(model(x))


def onnxruntime_call(model, x):
    """() -> the class scores of the model exported to ONNX (action_jax.export.cache: the
    first run exports, later ones reuse the file) on onnxruntime's CPU provider."""
    import numpy as np

    from action_jax.export.cache import cached_onnx
    from action_jax.export.runtime import OnnxModel

    model.cls_head.average_clips = 'score'  # the raw scores, as jitted_call compares them
    runner = OnnxModel(cached_onnx(model, x.shape[1:-1]), providers=['CPUExecutionProvider'])
    x = np.asarray(x)
    return lambda: runner(x)


# --------------------------------------------------------------------------- torch worker

def torch_mirror(model):
    """A torch.nn copy of an action_jax ResNet/ResNetTSM/ResNet3d recognizer with its
    weights; module names (hence state_dict keys) are MMAction2's."""
    import numpy as np
    import torch
    from torch import nn

    from action_jax.models.backbones.resnet_tsm import TemporalShiftConv

    def tensor(a, perm=None):
        a = np.asarray(a, np.float32)
        return torch.from_numpy(np.ascontiguousarray(a if perm is None else a.transpose(perm)))

    class TemporalShift(nn.Module):  # mmaction/models/backbones/resnet_tsm.py
        def __init__(self, net, num_segments, shift_div):
            super().__init__()
            self.net, self.num_segments, self.shift_div = net, num_segments, shift_div

        def forward(self, x):
            n, c, h, w = x.size()
            x = x.view(-1, self.num_segments, c, h * w)
            fold = c // self.shift_div
            left, mid, right = x[:, :, :fold], x[:, :, fold:2 * fold], x[:, :, 2 * fold:]
            left = torch.cat((left[:, 1:], (left - left)[:, :1]), 1)
            mid = torch.cat(((mid - mid)[:, :1], mid[:, :-1]), 1)
            return self.net(torch.cat((left, mid, right), 2).view(n, c, h, w))

    class ConvModule(nn.Module):
        def __init__(self, m):
            super().__init__()
            c = m.conv
            nd = len(c.kernel_size)
            conv = (nn.Conv2d if nd == 2 else nn.Conv3d)(
                c.in_features, c.out_features, c.kernel_size, stride=c.strides,
                padding=tuple(p[0] for p in c.padding), dilation=c.kernel_dilation,
                bias=False)
            conv.weight.data = tensor(c.kernel[...], (nd + 1, nd, *range(nd)))
            bn = (nn.BatchNorm2d if nd == 2 else nn.BatchNorm3d)(c.out_features,
                                                                 eps=m.bn.epsilon)
            bn.weight.data, bn.bias.data = tensor(m.bn.scale[...]), tensor(m.bn.bias[...])
            bn.running_mean.data = tensor(m.bn.mean[...])
            bn.running_var.data = tensor(m.bn.var[...])
            self.conv = (TemporalShift(conv, m.num_segments, m.shift_div)
                         if isinstance(m, TemporalShiftConv) else conv)
            self.bn = bn
            self.activate = nn.ReLU(inplace=True) if m.act else None

        def forward(self, x):
            x = self.bn(self.conv(x))
            return self.activate(x) if self.activate is not None else x

    class Block(nn.Module):
        def __init__(self, b):
            super().__init__()
            self.names = [n for n in ('conv1', 'conv2', 'conv3') if hasattr(b, n)]
            for n in self.names:
                setattr(self, n, ConvModule(getattr(b, n)))
            self.downsample = None if b.downsample is None else ConvModule(b.downsample)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = x
            for n in self.names:
                out = getattr(self, n)(out)
            return self.relu(out + identity)

    class Backbone(nn.Module):
        def __init__(self, bb):
            super().__init__()
            self.is_3d = type(bb).__name__ == 'ResNet3d'
            if getattr(bb, 'is_shift', False):
                assert bb.shift_place == 'blockres' and not bb.temporal_pool
            assert len(bb.out_indices) == 1
            self.conv1 = ConvModule(bb.conv1)
            if self.is_3d:
                self.maxpool = nn.MaxPool3d((1, 3, 3), bb.maxpool.stride, (0, 1, 1))
                self.pool2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1)) if bb.with_pool2 else None
                self.with_pool1 = bb.with_pool1
            else:
                self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.num_stages = bb.num_stages
            self.out_index = bb.out_indices[0]
            for i in range(bb.num_stages):
                setattr(self, f'layer{i + 1}',
                        nn.Sequential(*[Block(b) for b in bb.res_layer(i)]))

        def forward(self, x):
            x = self.conv1(x)
            if not self.is_3d or self.with_pool1:
                x = self.maxpool(x)
            for i in range(self.out_index + 1):
                x = getattr(self, f'layer{i + 1}')(x)
                if self.is_3d and i == 0 and self.pool2 is not None:
                    x = self.pool2(x)
            return x

    class Head(nn.Module):
        def __init__(self, h):
            super().__init__()
            self.kind = type(h).__name__
            self.num_segments = getattr(h, 'num_segments', None)
            fc = h.fc_cls
            self.fc_cls = nn.Linear(fc.in_features, fc.out_features)
            self.fc_cls.weight.data = tensor(fc.kernel[...], (1, 0))
            self.fc_cls.bias.data = tensor(fc.bias[...])

        def forward(self, x, num_segs):
            x = x.mean(dim=tuple(range(2, x.ndim)))  # AdaptiveAvgPool + flatten
            if self.kind == 'TSNHead':
                return self.fc_cls(x.view(-1, num_segs, x.shape[-1]).mean(1))
            scores = self.fc_cls(x)
            if self.kind == 'TSMHead':
                return scores.view(-1, self.num_segments, scores.shape[-1]).mean(1)
            return scores

    class Recognizer(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.backbone, self.cls_head = Backbone(m.backbone), Head(m.cls_head)

        def forward(self, x):  # [N, F, 3, H, W] or [N, V, 3, T, H, W]
            num_segs = x.shape[1]
            return self.cls_head(self.backbone(x.reshape(-1, *x.shape[2:])), num_segs)

    return Recognizer(model).eval()


def mmaction_model(cfg: dict, state_dict):
    """MMAction2's recognizer for `cfg` with `state_dict`, or None without mmaction."""
    try:
        from mmaction.registry import MODELS
        from mmaction.utils import register_all_modules
    except ImportError:
        return None
    register_all_modules()
    model = MODELS.build(cfg)
    model.load_state_dict(state_dict, strict=True)
    model.eval()

    def forward(x):  # mode='tensor' stops at the backbone; stage='head' gives the class scores
        return model._forward(x, stage='head')
    return forward


def torch_worker(args) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    results, runs = {}, []
    for name in args.models:
        jax_model = build_jax_model(name, args)
        mirror = torch_mirror(jax_model)
        ref = mmaction_model(model_cfg(name, args.frames), mirror.state_dict())
        impl = 'mmaction2' if ref is not None else 'torch mirror'
        run = ref or mirror
        x = make_input(name, args)
        # Channels-last -> MMAction2's layouts: [N, F, C, H, W] / [N, V, C, T, H, W].
        x = torch.from_numpy(np.ascontiguousarray(
            x.transpose(0, 1, 4, 2, 3) if x.ndim == 5 else x.transpose(0, 1, 5, 2, 3, 4)))

        def call(x, run=run):
            with torch.no_grad():
                scores = run(x)
                return scores, scores.softmax(-1)

        start = time.perf_counter()
        scores, _ = call(x)
        results[f'{name}/torch'] = dict(compile_s=time.perf_counter() - start, times=[],
                                        cpu_times=[],
                                        impl=impl, scores=scores.numpy().ravel().tolist())
        runs.append((f'{name}/torch', call, x))
    for _ in range(args.iters):
        for key, call, x in runs:
            timed(results[key], lambda: call(x))
    return results


# --------------------------------------------------------------------------- driver

def spawn(args, kind: str, flags: str) -> dict:
    env = dict(os.environ)
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + flags).strip()
    cmd = [sys.executable, __file__, '--worker', kind, '--models', *args.models,
           '--variants', *args.variants, '--iters', str(args.iters), '--batch',
           str(args.batch), '--size', str(args.size), '--frames', str(args.frames),
           '--i3d-frames', str(args.i3d_frames), '--seed', str(args.seed),
           '--threads', str(args.threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f'{kind} worker failed (XLA_FLAGS={flags!r})')
    return json.loads(lines[-1][len('RESULT '):])


def max_rel(a, b) -> float:
    import numpy as np
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['tsn', 'tsm', 'i3d'],
                        choices=list(CONFIGS))
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument('--flags', nargs='+', default=['default'],
                        help=f'XLA flag sets: {", ".join(FLAG_SETS)}, or literal flags '
                             '(anything starting with --xla)')
    parser.add_argument('--batch', type=int, default=1, help='clips per call')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--frames', type=int, default=8, help='TSN/TSM frames per clip')
    parser.add_argument('--i3d-frames', type=int, default=32)
    parser.add_argument('--small', action='store_true', help='64 px, 4 frames, I3D 8 frames')
    parser.add_argument('--quick', action='store_true',
                        help=f'variants {" ".join(QUICK_VARIANTS)} and torch, 1 round of 3 '
                             'calls (a few minutes at full size)')
    parser.add_argument('--iters', type=int, default=5, help='timed calls per round')
    parser.add_argument('--rounds', type=int, default=2, help='processes per flag set')
    parser.add_argument('--no-torch', action='store_true')
    parser.add_argument('--threads', type=int, default=0,
                        help='pin each run (JAX and torch) to this many CPUs; 0: all')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='write all measurements here')
    parser.add_argument('--list-flags', action='store_true')
    parser.add_argument('--worker', choices=['jax', 'torch'], help=argparse.SUPPRESS)
    return parser


def measure(models=('tsn', 'tsm', 'i3d'), variants=QUICK_VARIANTS, flags=('default',), *,
            torch: bool = True, **options) -> list[dict]:
    """Measures the variants under each XLA flag set, and PyTorch (MMAction2 where
    importable), interleaved; returns one row per (model, flag set, variant):
    {model, flags, variant, impl, median_s, min_s, cpu_s, clips_per_s, compile_s, times,
    cpu_times, scores, load}. `options`: the command line's other settings by their dest
    names (batch, size, frames, i3d_frames, iters, rounds, threads, seed)."""
    argv = ['--models', *models, '--variants', *variants, '--flags', *flags]
    args = build_parser().parse_args(argv + ([] if torch else ['--no-torch']))
    for key, value in options.items():
        if not hasattr(args, key):
            raise TypeError(f'measure() got an unknown option {key!r}')
        setattr(args, key, value)
    return _measure(args)


def _measure(args) -> list[dict]:
    flag_sets = {f: (FLAG_SETS[f] if f in FLAG_SETS else f) for f in args.flags}
    jobs = [('jax', name, flags) for name, flags in flag_sets.items()]
    if not args.no_torch:
        jobs.append(('torch', 'torch', ''))
    collected: dict[tuple[str, str], dict] = {}
    for r in range(args.rounds):
        for kind, label, flags in jobs:
            load = os.getloadavg()[0]
            for key, res in spawn(args, kind, flags).items():
                entry = collected.setdefault((label, key),
                                             dict(res, times=[], cpu_times=[], load=[]))
                entry['times'] += res['times']
                entry['cpu_times'] += res['cpu_times']
                entry['load'].append(load)
            print(f'  round {r + 1}: {label} done (load {load:.1f})', file=sys.stderr,
                  flush=True)
    rows = []
    for (label, key), res in collected.items():
        name, variant = key.split('/')
        median = statistics.median(res['times'])
        rows.append(dict(model=name, flags=label, variant=variant, impl=res.get('impl', 'jax'),
                         median_s=median, min_s=min(res['times']),
                         cpu_s=statistics.median(res['cpu_times']),
                         clips_per_s=args.batch / median, compile_s=res['compile_s'],
                         times=res['times'], cpu_times=res['cpu_times'],
                         scores=res['scores'], load=res['load']))
    return rows


def print_table(rows: list[dict]) -> None:
    """The rows by model: wall and CPU time per call, speed-ups over PyTorch and over the
    model's first JAX row, score error against that row."""
    loads = [load for r in rows for load in r['load']]
    print(f'\nload average during the runs: median {statistics.median(loads):.1f}, '
          f'max {max(loads):.1f}; per row {len(rows[0]["times"])} calls')
    print('wall: median (min) seconds per call; cpu: median process CPU seconds per call; '
          'x torch, x first: speed-ups by median wall [by cpu] over torch and over the '
          "model's first JAX row; err: max|scores - first row| / max|first row|")
    print(f'{"model":5} {"flags":16} {"variant":11} {"wall s":>13} {"clips/s":>7} '
          f'{"cpu s":>6} {"x torch":>11} {"x first":>11} {"compile":>7} {"err":>7}')

    def ratio(ref, r):
        if ref is None:
            return f'{"-":>11}'
        return f'{ref["median_s"] / r["median_s"]:4.2f} [{ref["cpu_s"] / r["cpu_s"]:4.2f}]'

    for name in dict.fromkeys(r['model'] for r in rows):
        mine = [r for r in rows if r['model'] == name]
        base = next((r for r in mine if r['variant'] != 'torch'), None)
        torch_row = next((r for r in mine if r['variant'] == 'torch'), None)
        for r in mine:
            err = f'{max_rel(r["scores"], base["scores"]):7.1e}' if base else f'{"-":>7}'
            label = r['flags'] if r['variant'] != 'torch' else r['impl']
            print(f'{name:5} {label:16} {r["variant"]:11} '
                  f'{r["median_s"]:6.3f} ({r["min_s"]:.3f}) {r["clips_per_s"]:7.2f} '
                  f'{r["cpu_s"]:6.2f} {ratio(torch_row, r)} {ratio(base, r)} '
                  f'{r["compile_s"]:7.1f} {err}')


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.small:
        args.size, args.frames, args.i3d_frames = 64, 4, 8
    if args.quick:
        args.variants, args.rounds, args.iters = list(QUICK_VARIANTS), 1, 3
    if args.list_flags:
        for name, flags in FLAG_SETS.items():
            print(f'{name:12} {flags}')
        return None
    if args.worker:
        pin_threads(args.threads)
        result = (jax_worker if args.worker == 'jax' else torch_worker)(args)
        print('RESULT ' + json.dumps(result), flush=True)
        return result

    import jax
    cpus = args.threads or len(os.sched_getaffinity(0))
    print(f'JAX {jax.__version__}, {cpus} CPU(s) ({cpu_model()}), load '
          f'{os.getloadavg()[0]:.1f}; batch {args.batch}, {args.size} px, TSN/TSM '
          f'{args.frames} frames, I3D {args.i3d_frames} frames; {args.rounds} rounds x '
          f'{args.iters} calls', flush=True)
    rows = _measure(args)
    print_table(rows)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            dict(args=vars(args), rows=[{k: v for k, v in r.items() if k != 'scores'}
                                        for r in rows]), indent=1))
    return rows


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the platform's processor or machine name."""
    import platform
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == '__main__':
    main()
