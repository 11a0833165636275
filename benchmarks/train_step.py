"""The TSN-R50 and TSM-R50 train step (JAX, as `main` runs it) against MMAction2's, and where
the step's time goes.

    python benchmarks/train_step.py --quick             # TSN and TSM, 2 clips x 3 segments x
                                                        # 224², 2 rounds x 2 steps, a table
    python benchmarks/train_step.py --models tsn --steps 5 --rounds 3 --dtype bfloat16
    python benchmarks/train_step.py --quick --profile   # + time per kind of op, JAX vs torch
    python benchmarks/train_step.py --quick --variants default dot1x1   # 1x1 convs as matmuls
    XLA_FLAGS=--xla_cpu_use_onednn=true python benchmarks/train_step.py --quick   # a flag

Runs on whatever JAX finds (CPU here, the GPU when there is one). MMAction2's side (where
`mmaction` is importable, e.g. `PYTHONPATH=.mmaction2` after benchmarks/install_mmaction2.sh)
is the same model and shapes through its Recognizer2D: forward, cross-entropy, backward,
gradient clipping, SGD with momentum and weight decay. The two are interleaved: each round
times `--steps` JAX steps then `--steps` torch steps (after one warm-up step each); the table
gives median seconds per step over all rounds and the load average at each round.

`--profile` traces one more step of each. JAX: `jax.profiler` with XLA:CPU's per-op trace
events (`--xla_cpu_enable_xprof_traceme`), each compiled HLO op's wall time summed by kind:
convolutions forward, backward-input (the gradient flowing to the layer below) and
backward-filter (the kernel's gradient; told apart by their output being a kernel), other
forward ops (BatchNorm, ReLU, pooling), other backward ops, and the rest (optimizer, copies).
torch: `torch.profiler`'s self CPU time per aten op summed into the same kinds
(`convolution_backward` computes both gradients of a conv in one op).
Our jits run convolutions on XLA's Eigen kernels (action_jax/xla_options.py), whose work
happens in Eigen's threads outside the traced thunks: the conv rows then hold only their
dispatch, and the total falls short of the step. For traced convolutions, profile YNNPACK's:
`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution`.
"""
import argparse
import collections
import functools
import glob
import os
import re
import statistics
import sys
import tempfile
import time

PROFILE_FLAG = '--xla_cpu_enable_xprof_traceme=true'
NUM_CLASSES = 400
OPTIM = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
             clip_grad=dict(max_norm=40.0))
KINDS = ('conv forward', 'conv backward-input', 'conv backward-filter', 'conv backward (both)',
         'other forward', 'other backward', 'layout copies', 'dropout rng',
         'optimizer and rest')
# Ops that only run other ops (their time is their body's, counted there).
CONTROL_FLOW = ('while', 'call', 'conditional')


def model_cfg(name: str, segments: int) -> dict:
    """MMAction2's K400 TSN / TSM ResNet-50 model dicts, without pretrained weights."""
    head = dict(num_classes=NUM_CLASSES, in_channels=2048, average_clips='prob',
                consensus=dict(type='AvgConsensus', dim=1))
    if name == 'tsn':
        return dict(type='Recognizer2D', backbone=dict(type='ResNet', depth=50,
                                                       norm_eval=False),
                    cls_head=dict(type='TSNHead', dropout_ratio=0.4, init_std=0.01, **head))
    return dict(type='Recognizer2D',
                backbone=dict(type='ResNetTSM', depth=50, num_segments=segments,
                              norm_eval=False, shift_div=8),
                cls_head=dict(type='TSMHead', num_segments=segments, dropout_ratio=0.5,
                              init_std=0.001, is_shift=True, **head))


def median_seconds(run, iters: int) -> float:
    """Median wall seconds of `iters` calls of `run` (a step of jax_step or torch_step) after
    one warm-up call."""
    run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- JAX

def conv_1x1_as_dot(lhs, rhs, window_strides, padding, *, lhs_dilation=None,
                    rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                    precision=None, **kwargs):
    """A channels-last 1x1 convolution (no padding, dilation or groups) as a strided slice
    and a matmul, so that its gradients are matmuls too: XLA:CPU computes the kernel
    gradient of a convolution as another convolution, several times slower (RESULTS.md)."""
    import jax.numpy as jnp
    assert all(p == (0, 0) for p in padding) and feature_group_count == 1, padding
    x = lhs[(slice(None),) + tuple(slice(None, None, s) for s in window_strides)]
    return jnp.einsum('...i,io->...o', x, rhs.reshape(rhs.shape[-2:]), precision=precision)


def convs_1x1_as_dots(model) -> None:
    """Every 1x1 nnx.Conv of `model` computed by conv_1x1_as_dot, in place."""
    from flax import nnx
    for _, conv in nnx.iter_modules(model):
        if isinstance(conv, nnx.Conv) and set(conv.kernel_size) == {1}:
            conv.conv_general_dilated = conv_1x1_as_dot


def jax_step(name: str, args, dot_1x1: bool = False):
    """(step() running one train step, compile seconds, profile() -> {kind: seconds}).
    `dot_1x1`: 1x1 convolutions computed by conv_1x1_as_dot."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from action_jax import xla_options
    from action_jax.config import DTYPES
    from action_jax.models.io import build_recognizer
    from action_jax.train import optim, sharding
    from action_jax.train.step import TrainState, train_step

    model = build_recognizer(model_cfg(name, args.segments), dtype=DTYPES[args.dtype])
    model.train()
    if dot_1x1:
        convs_1x1_as_dots(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    schedule = optim.build_schedule([], 0.01, 100, 1)
    tx = optim.build_optimizer(OPTIM, params, schedule)
    mesh = sharding.create_mesh()
    state = sharding.replicate(TrainState(params, rest, tx.init(params),
                                          jnp.zeros((), jnp.int32)), mesh)
    step = xla_options.jit(functools.partial(train_step, tx=tx, schedule=schedule),
                           static_argnums=0, donate_argnums=1)
    rng = np.random.default_rng(0)
    batch = sharding.global_batch({
        'imgs': rng.integers(0, 256, (args.batch, args.segments, args.size, args.size, 3),
                             dtype=np.uint8),
        'label': rng.integers(0, NUM_CLASSES, (args.batch,)).astype(np.int32)}, mesh)
    start = time.perf_counter()
    compiled = step.lower(graphdef, state, batch).compile()
    compile_s = time.perf_counter() - start
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch)
        jax.block_until_ready(metrics)

    kernels = {tuple(sorted(p.shape)) for p in jax.tree.leaves(params) if p.ndim == 4}
    return run, compile_s, lambda: profile_jax(run, compiled.as_text(), kernels)


def hlo_ops(hlo: str) -> dict[str, tuple[str, str, str]]:
    """{instruction name: (opcode, result shape, op_name metadata)} of a compiled HLO module;
    a fusion that holds a convolution (XLA:CPU wraps each in one) is given as that
    convolution, with the fusion's op_name (its body has none)."""
    name_re = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(')
    instructions, conv_shapes, computation = [], {}, None
    for line in hlo.splitlines():
        if line.endswith('{') and not line.startswith(' '):
            computation = line.split()[1 if line.startswith('ENTRY') else 0].lstrip('%')
            continue
        match = name_re.match(line)
        if not match:
            continue
        name, shape, opcode = match.groups()
        called = re.search(r'calls=%?([\w.\-]+)', line)
        op_name = re.search(r'op_name="([^"]*)"', line)
        instructions.append((name, opcode, shape, op_name.group(1) if op_name else '',
                             called.group(1) if called else None))
        if opcode == 'convolution':
            conv_shapes[computation] = shape
    return {name: ('convolution', conv_shapes[called], op_name) if called in conv_shapes
            else (opcode, shape, op_name)
            for name, opcode, shape, op_name, called in instructions}


def op_kind(name: str, opcode: str, shape: str, op_name: str, kernels: set) -> str | None:
    """A compiled op's kind (KINDS), None for control flow. A convolution whose output has
    a kernel's dimensions is a filter gradient (XLA rewrites those convs, with the
    activations transposed to put channels first, and drops their op_name); activations
    never do, their batch dimension being no kernel size."""
    backward = 'transpose(' in op_name
    if opcode in CONTROL_FLOW:
        return None
    if opcode == 'convolution':
        dims = tuple(sorted(int(d) for d in re.findall(r'\d+', shape.split('{')[0][3:])))
        if dims in kernels:
            return 'conv backward-filter'
        return 'conv backward-input' if backward else 'conv forward'
    if 'transpose' in name or 'copy' in name:
        return 'layout copies'
    if '_bernoulli' in op_name or '_uniform' in op_name:
        return 'dropout rng'
    if backward:
        return 'other backward'
    return 'other forward' if 'jvp(' in op_name else 'optimizer and rest'


def profile_jax(run, hlo: str, kernels: set) -> dict[str, float]:
    import jax

    ops = hlo_ops(hlo)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            run()
        (path,) = glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True)
        profile = jax.profiler.ProfileData.from_file(path)
    totals = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            for event in line.events:
                op = dict(event.stats).get('hlo_op')
                kind = op_kind(op, *ops[op], kernels) if op in ops else None
                if kind is not None:
                    totals[kind] += event.duration_ns * 1e-9
    if not totals:
        raise RuntimeError(f'no XLA op events in the trace: run with XLA_FLAGS={PROFILE_FLAG}')
    return dict(totals)


# --------------------------------------------------------------------------- MMAction2

def torch_step(name: str, args):
    """(step(), build seconds, profile()) of MMAction2's model, or None without mmaction."""
    try:
        import torch
        from mmaction.registry import MODELS
        from mmaction.utils import register_all_modules
    except ImportError as e:
        print(f'MMAction2 not importable ({e}); JAX only.', file=sys.stderr)
        return None
    register_all_modules()
    start = time.perf_counter()
    cfg = model_cfg(name, args.segments)
    cfg = dict(cfg, data_preprocessor=dict(type='ActionDataPreprocessor', format_shape='NCHW'))
    model = MODELS.build(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, args.segments, 3, args.size, args.size)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,))

    def run():
        with torch.profiler.record_function('forward'):
            feats = model.extract_feat(x)[0]
            loss = torch.nn.functional.cross_entropy(
                model.cls_head(feats, num_segs=args.segments), labels)
        with torch.profiler.record_function('backward'):
            opt.zero_grad()
            loss.backward()
        with torch.profiler.record_function('optimizer'):
            torch.nn.utils.clip_grad_norm_(model.parameters(),
                                           OPTIM['clip_grad']['max_norm'])
            opt.step()

    return run, time.perf_counter() - start, lambda: profile_torch(run)


def profile_torch(run) -> dict[str, float]:
    """Self CPU time of every op, by the phase (record_function range) it started in."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    events = prof.events()
    phases = [(e.time_range.start, e.time_range.end, e.name) for e in events
              if e.name in ('forward', 'backward', 'optimizer')]
    totals = collections.Counter()
    for event in events:
        phase = next((name for start, end, name in phases
                      if start <= event.time_range.start < end), 'optimizer')
        conv = 'conv' in event.name
        kind = {'forward': 'conv forward' if conv else 'other forward',
                'backward': 'conv backward (both)' if conv else 'other backward'}.get(
                    phase, 'optimizer and rest')
        totals[kind] += event.self_cpu_time_total * 1e-6
    return dict(totals)


# --------------------------------------------------------------------------- driver

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['tsn', 'tsm'], choices=['tsn', 'tsm'])
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--segments', type=int, default=3)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--steps', type=int, default=5, help='timed steps per round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--quick', action='store_true', help='2 rounds x 2 steps')
    parser.add_argument('--profile', action='store_true',
                        help='time per kind of op over one more step of each')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
    parser.add_argument('--variants', nargs='+', default=['default'],
                        choices=['default', 'dot1x1'],
                        help='JAX steps: default (as main runs it), dot1x1 (1x1 convs as '
                             'matmuls, conv_1x1_as_dot)')
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 2, 2
    if args.profile and PROFILE_FLAG not in os.environ.get('XLA_FLAGS', ''):
        # XLA reads its flags once, at the first use of JAX: set before importing it.
        os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {PROFILE_FLAG}'.strip()
    import jax

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from inference import cpu_model

    print(f'JAX {jax.__version__} on {jax.devices()[0].device_kind} ({cpu_model()}, '
          f'{len(os.sched_getaffinity(0))} CPUs); XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}'
          f'; {args.batch} clips x {args.segments} segments x {args.size}², {args.dtype}; '
          f'{args.rounds} rounds x {args.steps} steps', flush=True)
    rows = []
    for name in args.models:
        sides = {('jax' if variant == 'default' else f'jax {variant}'):
                 jax_step(name, args, dot_1x1=variant == 'dot1x1') for variant in args.variants}
        sides['mmaction2'] = torch_step(name, args)
        sides = {side: value for side, value in sides.items() if value is not None}
        times = {side: [] for side in sides}
        cpu_times = {side: [] for side in sides}
        loads = []
        for side, (run, _, _) in sides.items():
            run()  # warm-up
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for side, (run, _, _) in sides.items():
                for _ in range(args.steps):
                    start, cpu = time.perf_counter(), time.process_time()
                    run()
                    times[side].append(time.perf_counter() - start)
                    cpu_times[side].append(time.process_time() - cpu)
        profiles = {side: profile() for side, (_, _, profile) in sides.items()} \
            if args.profile else {}
        rows.append(dict(model=name, times=times, cpu_times=cpu_times, loads=loads,
                         profiles=profiles,
                         setup_s={side: value[1] for side, value in sides.items()}))
        print_row(rows[-1], args)
    return rows


def print_row(row: dict, args) -> None:
    medians = {side: statistics.median(t) for side, t in row['times'].items()}
    print(f'\n{row["model"].upper()}: load average {", ".join(f"{x:.1f}" for x in row["loads"])}'
          f' (one per round); set-up (JAX: compile) seconds '
          + ', '.join(f'{side} {value:.1f}' for side, value in row['setup_s'].items()))
    print('s/step: median wall seconds per step (min); cpu s: median process CPU seconds '
          'per step (all threads); x MMAction2: wall ratio')
    print(f'{"":10} {"s/step":>7} {"min":>7} {"cpu s":>7} {"clips/s":>8} {"x MMAction2":>12}')
    for side, median in medians.items():
        ratio = medians['mmaction2'] / median if 'mmaction2' in medians else float('nan')
        print(f'{side:10} {median:7.3f} {min(row["times"][side]):7.3f} '
              f'{statistics.median(row["cpu_times"][side]):7.2f} '
              f'{args.batch / median:8.2f} {ratio:12.2f}')
    if row['profiles']:
        print('\nprofile of one step, seconds (per-op wall time summed by kind; Eigen '
              'convolutions untraced, see the docstring):')
        print(f'{"kind":24} ' + ' '.join(f'{side:>10}' for side in row['profiles']))
        for kind in KINDS + ('total',):
            values = [p.get(kind, 0.0) if kind != 'total' else sum(p.values())
                      for p in row['profiles'].values()]
            if any(values):
                print(f'{kind:24} ' + ' '.join(f'{v:10.3f}' for v in values))


if __name__ == '__main__':
    main()
