"""Videos/s of the TSN 1x1x3 K400 train pipeline through the data loader, against MMAction2.

    python benchmarks/data_pipeline.py [--quick] [--rounds 3] [--videos 24] [--workers 2]
        [--batches 20] [--frames 300] [--gop 250] [--transcode] [--mmaction2-dir .mmaction2]

Writes synthetic 340x256 H.264 videos (300 frames, a keyframe every 250, like MMAction2's
Kinetics preprocessing) to a temporary directory, then times configs/tsn_k400.py's train
pipeline (SampleFrames(1, 1, 3) -> decode -> Resize(-1, 256) -> MultiScaleCrop(224) ->
Resize(224) -> Flip -> FormatShape('NCHW') -> PackActionInputs), batch 8, `--workers`
processes, on three sides, each measurement in a fresh process, the sides interleaved in every
round (the machine may be shared: compare ratios, not absolute rates):
  mmaction2   MMAction2 1.2.0 itself (its DecordInit/DecordDecode, a torch DataLoader), where
              importable: on the path or in `--mmaction2-dir` (benchmarks/install_mmaction2.sh)
  DecordInit  action_jax with MMAction2's reader (decord)
  shipped     action_jax as configs/tsn_k400.py ships it (PyAVInit/PyAVDecode)
Before the rounds, a profile of the PyAV reader on the same videos: frames decoded per sampled
frame (against a decoder that cannot skip frames), time per decoded frame, and how close the
reader gets to the time of decoding just the frames an exact reader needs.
``--transcode`` also times the videos re-encoded by ``action_jax.tools.transcode_videos``
(short side 256, a keyframe every 16 frames, crf 23). ``--quick``: one round, few batches.
"""
import argparse
import json
import multiprocessing
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil

from action_jax import config_path
from action_jax.config import as_dict
from action_jax.data import loader
from action_jax.data.synthetic import render_clip, sample_clip, write_video

REPO = pathlib.Path(__file__).resolve().parent.parent
SIDES = ('mmaction2', 'DecordInit', 'shipped')
# The shipped reader -> MMAction2's (decord), every other step kept.
TO_DECORD = {'PyAVInit': 'DecordInit', 'PyAVDecode': 'DecordDecode'}


def shipped_pipeline() -> list[dict]:
    config = config_path.load(str(REPO / 'configs' / 'tsn_k400.py'))
    return [as_dict(step) for step in config.train_dataloader.dataset.pipeline]


def decord_pipeline() -> list[dict]:
    return [dict(step, type=TO_DECORD.get(step['type'], step['type']))
            for step in shipped_pipeline()]


def _write_one(job: tuple[str, int, int, int]) -> None:
    path, i, frames, gop = job
    rng = np.random.default_rng(i)
    # The synthetic set's moving shapes on a textured background: a bitrate like real
    # 340x256 Kinetics videos (a few hundred kbit/s), unlike white noise.
    clip = render_clip(sample_clip(i % 8, rng, 340, 256), frames, rng)
    write_video(path, clip, 30, gop_size=gop, crf=28)


def make_videos(root: str, n: int, frames: int, gop: int) -> str:
    """Writes n videos (in parallel, ~2 CPU-seconds each) and their list file."""
    jobs = [(os.path.join(root, f'{i:03d}.mp4'), i, frames, gop) for i in range(n)]
    with multiprocessing.get_context('spawn').Pool(len(os.sched_getaffinity(0))) as pool:
        pool.map(_write_one, jobs)
    ann = os.path.join(root, 'list.txt')
    with open(ann, 'w') as f:
        f.write(''.join(f'{i:03d}.mp4 {i % 8}\n' for i in range(n)))
    return ann


def _tree_cpu_seconds() -> float:
    """CPU time of this process and its live children (the loader's workers)."""
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # a worker that just ended
            continue
        total += times.user + times.system
    return total


def timed(it, workers: int, batches: int, batch_size: int) -> dict[str, float]:
    """clips/s, and CPU ms per clip of the whole loader (all its processes and threads),
    over `batches` batches after the start-up ones."""
    for _ in range(workers + 1):  # start-up (every worker process) is not throughput
        next(it)
    cpu, t0 = _tree_cpu_seconds(), time.perf_counter()
    for _ in range(batches):
        next(it)
    wall = time.perf_counter() - t0
    clips = batches * batch_size
    return dict(clips_per_sec=clips / wall,
                cpu_ms_per_clip=(_tree_cpu_seconds() - cpu) / clips * 1e3)


def loader_figures(dataset, pipeline, workers: int, batches: int,
                   batch_size: int = 8) -> dict[str, float]:
    it = iter(loader.train_dataset(dataset, pipeline, batch_size=batch_size, seed=0,
                                   num_workers=workers))
    figures = timed(it, workers, batches, batch_size)
    it.close()
    return figures


def mmaction2_figures(ann: str, prefix: str, workers: int, batches: int,
                      batch_size: int = 8) -> dict[str, float]:
    import torch
    from mmaction.registry import DATASETS
    from mmaction.utils import register_all_modules
    from mmengine.dataset import InfiniteSampler, pseudo_collate

    register_all_modules()
    dataset = DATASETS.build(dict(type='VideoDataset', ann_file=ann,
                                  data_prefix=dict(video=prefix), pipeline=decord_pipeline()))
    it = iter(torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=pseudo_collate,
        sampler=InfiniteSampler(dataset, shuffle=True, seed=0)))
    return timed(it, workers, batches, batch_size)


def measure(side: str, ann: str, prefix: str, workers: int, batches: int) -> dict[str, float]:
    """One side's figures (run in a fresh process by `spawn`)."""
    if side == 'mmaction2':
        return mmaction2_figures(ann, prefix, workers, batches)
    from absl import flags

    from action_jax.data.datasets import VideoDataset
    flags.FLAGS(['data_pipeline'], known_only=True)  # grain's worker processes read absl flags
    pipeline = shipped_pipeline() if side == 'shipped' else decord_pipeline()
    return loader_figures(VideoDataset(ann, data_prefix=prefix), pipeline, workers, batches)


def spawn(side: str, ann: str, prefix: str, args) -> dict[str, float]:
    cmd = [sys.executable, __file__, '--side', side, '--ann', ann, '--prefix', prefix,
           '--workers', str(args.workers), '--batches', str(args.batches)]
    env = dict(os.environ)
    if side == 'mmaction2' and args.mmaction2_dir:
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [args.mmaction2_dir,
                                                          env.get('PYTHONPATH')]))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f'{side} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def mmaction2_available(args) -> bool:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [args.mmaction2_dir, os.environ.get('PYTHONPATH')])))
    return subprocess.run([sys.executable, '-c', 'import mmaction'], env=env,
                          capture_output=True).returncode == 0


def decode_profile(ann: str, prefix: str, num_clips: int = 3) -> dict:
    """The PyAV reader on TSN-style requests (one random frame per segment) over the videos.

    `needed`: frames from the keyframe before each sampled frame up to it (what a decoder
    that cannot skip frames, e.g. decord, decodes); `decoded`: frames the PyAV reader had
    decoded (the reference frames among them, and the sampled ones); `ms_per_frame`: a plain
    decode of each whole video; `ceiling_ms`: decoded x ms_per_frame, the time an exact
    reader cannot go below with this decoder.
    """
    import av

    from action_jax.data.readers import PyAVReader
    from action_jax.data.transforms import SampleFrames

    with open(ann) as f:
        paths = [os.path.join(prefix, line.split()[0]) for line in f if line.strip()]
    sample = SampleFrames(clip_len=1, frame_interval=1, num_clips=num_clips)
    rng = np.random.default_rng(0)
    needed = decoded = 0
    reader_s = plain_s = plain_frames = 0.0
    # CPU time (one thread, nothing else in this process): steadier than wall time when the
    # machine is shared.
    for path in paths:
        t0 = time.process_time()
        reader = PyAVReader(path)
        inds = sample(dict(total_frames=len(reader), start_index=0), rng)['frame_inds']
        reader.get_frames(inds)
        reader_s += time.process_time() - t0
        decoded += reader.frames_decoded
        unique = np.unique(inds)
        spans = np.zeros(len(reader), bool)
        for i, key in zip(unique, reader.keyframe_before(unique)):
            spans[key:i + 1] = True
        needed += int(spans.sum())
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            t0 = time.process_time()
            plain_frames += sum(1 for _ in container.decode(stream))
            plain_s += time.process_time() - t0
    n = len(paths) * num_clips
    ms_per_frame = plain_s / plain_frames * 1e3
    return dict(sampled_per_video=num_clips, needed_per_sampled=needed / n,
                decoded_per_sampled=decoded / n, ms_per_frame=ms_per_frame,
                reader_ms_per_video=reader_s / len(paths) * 1e3,
                ceiling_ms_per_video=decoded / len(paths) * ms_per_frame)


def transcoded(root: str, n: int) -> str:
    from action_jax.tools.transcode_videos import transcode
    dense = os.path.join(root, 'dense')
    t0 = time.perf_counter()
    for i in range(n):
        transcode(os.path.join(root, f'{i:03d}.mp4'), os.path.join(dense, f'{i:03d}.mp4'),
                  short_side=256, gop=16)
    print(f'transcoded them in {time.perf_counter() - t0:.1f} s', flush=True)
    return dense


def run_rounds(ann: str, prefix: str, sides: list[str], args) -> dict[str, list[dict]]:
    figures: dict[str, list[dict]] = {side: [] for side in sides}
    loads = []
    for r in range(args.rounds):
        for side in sides:
            loads.append(os.getloadavg()[0])
            f = spawn(side, ann, prefix, args)
            figures[side].append(f)
            print(f'  round {r + 1}: {side:10s} {f["clips_per_sec"]:6.1f} clips/s '
                  f'{f["cpu_ms_per_clip"]:6.1f} CPU ms/clip  (load average {loads[-1]:.1f})',
                  flush=True)
    print(f'  median of {args.rounds} round(s), load average median '
          f'{statistics.median(loads):.1f} (max {max(loads):.1f}); x MMAction2 > 1: faster, '
          'per round in brackets:')
    for side in sides:
        line = f'  {side:10s}'
        for key, unit, better in (('clips_per_sec', 'clips/s', 1), ('cpu_ms_per_clip',
                                                                     'CPU ms/clip', -1)):
            ours = [f[key] for f in figures[side]]
            line += f' {statistics.median(ours):6.1f} {unit}'
            if 'mmaction2' in figures:
                ratios = [(a / b) ** better for a, b in
                          zip(ours, (f[key] for f in figures['mmaction2']))]
                line += (f' x{statistics.median(ratios):.2f} ('
                         + ', '.join(f'{x:.2f}' for x in ratios) + ')')
        print(line, flush=True)
    return figures


def main():
    from inference import cpu_model  # benchmarks/inference.py (this script's folder is on the path)

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='1 round, 8 batches, 16 videos: a smoke run, not a figure')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--videos', type=int, default=24)
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--gop', type=int, default=250)
    parser.add_argument('--workers', type=int, default=2, help='data loader processes')
    parser.add_argument('--batches', type=int, default=20)
    parser.add_argument('--transcode', action='store_true',
                        help='also time the videos after transcode_videos (dense-encoded)')
    parser.add_argument('--mmaction2-dir', default=str(REPO / '.mmaction2'),
                        help='where benchmarks/install_mmaction2.sh put MMAction2')
    # One measurement, in the process `spawn` starts.
    parser.add_argument('--side', choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument('--ann', help=argparse.SUPPRESS)
    parser.add_argument('--prefix', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args.side, args.ann, args.prefix, args.workers, args.batches)))
        return
    if args.quick:
        args.rounds, args.batches, args.videos = 1, 8, 16
    sides = list(SIDES) if mmaction2_available(args) else list(SIDES[1:])
    print(f'{cpu_model()}, {len(os.sched_getaffinity(0))} CPUs, load average '
          f'{os.getloadavg()[0]:.1f}; {args.workers} loader processes, batch 8'
          + ('' if 'mmaction2' in sides else f'; MMAction2 not importable from '
             f'{args.mmaction2_dir}: its side is left out'), flush=True)
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        ann = make_videos(root, args.videos, args.frames, args.gop)
        print(f'wrote {args.videos} videos of 340x256x{args.frames} (GOP {args.gop}) in '
              f'{time.perf_counter() - t0:.1f} s', flush=True)
        video_sets = [('original', root)]
        if args.transcode:
            video_sets.append(('dense-encoded', transcoded(root, args.videos)))
        for videos, prefix in video_sets:
            size = np.mean([os.path.getsize(os.path.join(prefix, f'{i:03d}.mp4'))
                            for i in range(args.videos)]) / 1024
            p = decode_profile(ann, prefix)
            print(f'{videos} videos ({size:.0f} KiB): PyAV reader decodes '
                  f'{p["decoded_per_sampled"]:.1f} frames per sampled frame (a decoder that '
                  f'cannot skip: {p["needed_per_sampled"]:.1f}), {p["ms_per_frame"]:.3f} ms per '
                  f'decoded frame; {p["reader_ms_per_video"]:.1f} ms per video (open + '
                  f'decode + RGB) against {p["ceiling_ms_per_video"]:.1f} ms of decoding '
                  'alone (CPU times)', flush=True)
            print(f'TSN 1x1x3 train pipeline, {videos} videos:', flush=True)
            run_rounds(ann, prefix, sides, args)


if __name__ == '__main__':
    main()
