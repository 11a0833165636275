"""action_jax vs MMAction2 1.2.0, the lines of issue #15's table, interleaved, in one command.

    python benchmarks/compare_mmaction2.py [--videos LIST --data-prefix DIR] [--json OUT]
        [--quick] [--lines pipeline inference train_step] [--rounds 2]

Lines (each side of each line runs in a fresh process, so its peak RSS is its own; on a GPU
the peak device memory of JAX is given too):
  pipeline    TSN 1x1x3 train pipeline (configs/tsn_k400.py's, as shipped: PyAVInit ...
              FormatShape, PackActionInputs) through the grain loader, batch 8, `--workers`
              processes, videos/s: from the raw videos, and from a pack of them built here
              (action_jax.data.packed; PackedInit/PackedDecode in place of PyAVInit/
              PyAVDecode; packing time reported). MMAction2: the same pipeline with its
              DecordInit/DecordDecode, as its config, through its VideoDataset and a torch
              DataLoader (InfiniteSampler, pseudo_collate).
  inference   batch 1, 224², fp32, s/clip: TSN 8 frames, TSM 8, I3D 32 (benchmarks/inference.py's
              workers: our model as init_recognizer returns it on CPU, vs MMAction2's model
              with the same weights)
  train_step  TSN-R50, 2 clips x 3 segments x 224², fp32, SGD (benchmarks/train_step.py)

Videos: a list file of yours, or by default benchmarks/data_pipeline.py's synthetic
Kinetics-like set (340x256 H.264, 300 frames, a keyframe every 250). MMAction2 is used where
importable: on the path, or in `--mmaction2-dir` (benchmarks/install_mmaction2.sh's default
.mmaction2); nothing is installed. Rounds run every line's sides in turn; the table gives the
median over rounds, the ratio (x MMAction2 > 1: action_jax is faster), the CPU model and the
load average (the machine may be shared: compare ratios, not absolute times).
"""
import argparse
import gc
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data_pipeline  # noqa: E402  (benchmarks/ is not a package)
import inference  # noqa: E402
import train_step  # noqa: E402

LINES = ('pipeline', 'inference', 'train_step')
INFERENCE_FRAMES = {'tsn': 8, 'tsm': 8, 'i3d': 32}
# Decode pair of the raw-video pipeline -> its packed counterpart; every other step is kept.
PACKED_STEPS = {'DecordInit': 'PackedInit', 'DecordDecode': 'PackedDecode',
                'PyAVInit': 'PackedInit', 'PyAVDecode': 'PackedDecode'}


# --------------------------------------------------------------------------- workers

def measure_pipeline(side: str, args) -> dict:
    """Videos/s of the TSN train pipeline, batch 8 (benchmarks/data_pipeline.py's loaders)."""
    if side == 'mmaction2':
        # MMAction2's own config decodes with decord (its PyAV transforms are much slower).
        figures = data_pipeline.mmaction2_figures(args.videos, args.data_prefix, args.workers,
                                                  args.batches)
        return dict(value=figures['clips_per_sec'])
    from absl import flags

    from action_jax.data.datasets import build_dataset
    flags.FLAGS(['compare_mmaction2'], known_only=True)  # grain's workers read absl flags
    pipeline = data_pipeline.shipped_pipeline()
    if side == 'packed':
        dataset = build_dataset(dict(type='PackedDataset', ann_file=args.videos,
                                     data_prefix=dict(packed=args.pack)))
        pipeline = [dict(step, type=PACKED_STEPS.get(step['type'], step['type']))
                    for step in pipeline]
    else:
        dataset = build_dataset(dict(type='VideoDataset', ann_file=args.videos,
                                     data_prefix=dict(video=args.data_prefix)))
    figures = data_pipeline.loader_figures(dataset, pipeline, args.workers, args.batches)
    return dict(value=figures['clips_per_sec'])


def measure_inference(side: str, model: str, args) -> dict:
    """Median s/clip over `iters` calls (benchmarks/inference.py's workers)."""
    ns = types.SimpleNamespace(models=[model], variants=['init_recognizer'], iters=args.iters,
                               batch=1, size=224, frames=INFERENCE_FRAMES[model],
                               i3d_frames=INFERENCE_FRAMES['i3d'], seed=0, threads=0)
    worker = inference.torch_worker if side == 'mmaction2' else inference.jax_worker
    (result,) = worker(ns).values()
    return dict(value=statistics.median(result['times']), compile_s=result['compile_s'])


def measure_train_step(side: str, args) -> dict:
    """Median s/step of TSN-R50 over `iters` steps after a warm-up (benchmarks/train_step.py's
    steps)."""
    ns = types.SimpleNamespace(batch=2, segments=3, size=224, dtype='float32')
    step = train_step.torch_step if side == 'mmaction2' else train_step.jax_step
    run, setup_s, _ = step('tsn', ns)
    return dict(value=train_step.median_seconds(run, args.iters), compile_s=setup_s)


def worker(args) -> dict:
    line, side = args.worker
    if line == 'pipeline':
        result = measure_pipeline(side, args)
    elif line == 'train_step':
        result = measure_train_step(side, args)
    else:
        result = measure_inference(side, line.split(':')[1], args)
    gc.collect()  # loader iterators gone: their worker processes are joined
    result['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result['worker_peak_rss_mib'] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 or None)
    if side != 'mmaction2':
        import jax
        stats = jax.devices()[0].memory_stats() or {}
        if 'peak_bytes_in_use' in stats:
            result['peak_device_mib'] = stats['peak_bytes_in_use'] / 2**20
    return result


# --------------------------------------------------------------------------- driver

# Row label, unit, whether more is better, the sides (MMAction2 first).
def rows_for(lines: list[str]) -> list[tuple[str, str, str, bool, tuple[str, ...]]]:
    rows = []
    if 'pipeline' in lines:
        rows.append(('pipeline', 'TSN train pipeline', 'videos/s', True,
                     ('mmaction2', 'raw', 'packed')))
    if 'inference' in lines:
        for model, frames in INFERENCE_FRAMES.items():
            rows.append((f'inference:{model}', f'{model.upper()} inference 1x{frames}x224² fp32',
                         's/clip', False, ('mmaction2', 'jax')))
    if 'train_step' in lines:
        rows.append(('train_step', 'TSN-R50 train step 2x3x224² fp32 SGD', 's/step', False,
                     ('mmaction2', 'jax')))
    return rows


def spawn(args, line: str, side: str, env: dict) -> dict:
    cmd = [sys.executable, __file__, '--worker', line, side, '--videos', args.videos,
           '--data-prefix', args.data_prefix, '--pack', args.pack or '', '--workers',
           str(args.workers), '--batches', str(args.batches), '--iters', str(args.iters)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=HERE.parent)
    lines = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f'{line} ({side}) worker failed')
    return json.loads(lines[-1][len('RESULT '):])


def prepare_videos(args, tmp: str) -> None:
    """For the pipeline line: the default synthetic videos, then their pack (timed)."""
    from action_jax.data import packed

    if 'pipeline' not in args.lines:
        return
    if not args.videos:
        start = time.perf_counter()
        args.videos = data_pipeline.make_videos(tmp, args.num_videos, 300, 250)
        args.data_prefix = tmp
        print(f'wrote {args.num_videos} synthetic 340x256 H.264 videos (300 frames, GOP 250) '
              f'in {time.perf_counter() - start:.1f} s', flush=True)
    with open(args.videos) as f:
        videos = [line.split()[0] for line in f if line.strip()]
    args.pack = os.path.join(tmp, 'pack')
    start = time.perf_counter()
    index = packed.pack_videos(videos, args.data_prefix, args.pack,
                               workers=len(os.sched_getaffinity(0)))
    size = sum(os.path.getsize(os.path.join(args.pack, s)) for s in index['shards'])
    print(f'packed {len(index["videos"])} videos (JPEG q95, {size / 2**20:.0f} MiB; '
          f'{len(index["skipped"])} skipped) in {time.perf_counter() - start:.1f} s',
          flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--videos', default='', help='video list file (default: synthetic)')
    parser.add_argument('--data-prefix', default='', help='directory of the listed videos')
    parser.add_argument('--num-videos', type=int, default=24, help='synthetic videos')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--lines', nargs='+', default=list(LINES), choices=LINES)
    parser.add_argument('--quick', action='store_true', help='few iterations, one round')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--workers', type=int, default=2, help='data loader processes')
    parser.add_argument('--batches', type=int, default=40, help='timed pipeline batches')
    parser.add_argument('--iters', type=int, default=5, help='timed model calls or steps')
    parser.add_argument('--mmaction2-dir', default=str(HERE.parent / '.mmaction2'),
                        help='where install_mmaction2.sh put MMAction2 (if it is there)')
    parser.add_argument('--pack', help=argparse.SUPPRESS)
    parser.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print('RESULT ' + json.dumps(worker(args)), flush=True)
        return None
    if args.quick:
        args.rounds, args.batches, args.iters = 1, 20, 2

    env = dict(os.environ)
    if os.path.isdir(args.mmaction2_dir):
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [env.get('PYTHONPATH'),
                                                          args.mmaction2_dir]))
    probe = subprocess.run([sys.executable, '-c', 'import mmaction'], env=env,
                           capture_output=True)
    has_mmaction2 = probe.returncode == 0
    if not has_mmaction2:
        print('MMAction2 is not importable (run benchmarks/install_mmaction2.sh): '
              'action_jax only', flush=True)
    print(f'CPU: {inference.cpu_model()}, {len(os.sched_getaffinity(0))} cores; '
          f'load average {os.getloadavg()[0]:.1f}', flush=True)

    rows = rows_for(args.lines)
    collected: dict[tuple[str, str], list[dict]] = {}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        prepare_videos(args, tmp)
        for r in range(args.rounds):
            for line, label, _, _, sides in rows:
                for side in sides:
                    if side == 'mmaction2' and not has_mmaction2:
                        continue
                    loads.append(os.getloadavg()[0])
                    collected.setdefault((line, side), []).append(spawn(args, line, side, env))
                    print(f'  round {r + 1}: {label}, {side}: '
                          f'{collected[line, side][-1]["value"]:.3f} '
                          f'(load {loads[-1]:.1f})', file=sys.stderr, flush=True)
    return report(args, rows, collected, loads)


def report(args, rows, collected, loads) -> dict:
    def median(line, side, key='value'):
        runs = collected.get((line, side))
        values = [run[key] for run in runs or () if run.get(key) is not None]
        return statistics.median(values) if values else None

    print(f'\nCPU: {inference.cpu_model()}; load average during the runs: median '
          f'{statistics.median(loads):.1f}, max {max(loads):.1f}; {args.rounds} round(s), '
          'medians; x MMAction2 > 1: action_jax faster; RSS: peak of the measuring process '
          '(in brackets: of the largest data-loader worker)')
    print(f'{"line":42} {"unit":9} {"side":9} {"value":>9} {"x MMAction2":>11} '
          f'{"RSS MiB":>12}')
    out = dict(cpu=inference.cpu_model(), loads=loads, rows=[])
    for line, label, unit, higher, sides in rows:
        ref = median(line, 'mmaction2')
        for side in sides:
            value = median(line, side)
            if value is None:
                continue
            ratio = (value / ref if higher else ref / value) if ref else None
            rss, worker_rss = (median(line, side, 'peak_rss_mib'),
                               median(line, side, 'worker_peak_rss_mib'))
            device = median(line, side, 'peak_device_mib')
            memory = f'{rss:.0f}' + (f' ({worker_rss:.0f})' if worker_rss else '')
            print(f'{label:42} {unit:9} {side:9} {value:9.3f} '
                  f'{f"{ratio:.2f}" if ratio else "-":>11} {memory:>12}'
                  + (f' (device {device:.0f} MiB)' if device else ''))
            out['rows'].append(dict(line=line, label=label, unit=unit, side=side, value=value,
                                    x_mmaction2=ratio, peak_rss_mib=rss,
                                    worker_peak_rss_mib=worker_rss, peak_device_mib=device,
                                    runs=collected[line, side]))
            if line == 'pipeline':
                out[f'pipeline_{side}_videos_per_s'] = value
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == '__main__':
    main()
