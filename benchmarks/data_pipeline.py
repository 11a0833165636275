"""Clips/s of MMAction2's TSN training pipeline through the grain loader, 0 and 2 workers.

    python benchmarks/data_pipeline.py [--videos 32] [--frames 300] [--gop 250] [--batches 20]
        [--transcode]

Writes synthetic 340x256 H.264 videos (300 frames, a keyframe every 250, like MMAction2's
Kinetics preprocessing) to a temporary directory, then times DecordInit -> SampleFrames(1, 1, 3)
-> DecordDecode -> Resize(-1, 256) -> MultiScaleCrop(224) -> Resize(224) -> Flip -> Normalize
-> FormatShape('NCHW'), batched by 8. ``--transcode`` also times the same videos re-encoded by
``action_jax.tools.transcode_videos`` (short side 256, a keyframe every 16 frames, crf 23).
"""
import argparse
import multiprocessing
import os
import tempfile
import time

import numpy as np
from absl import flags

from action_jax.data import loader
from action_jax.data.datasets import VideoDataset
from action_jax.data.synthetic import render_clip, sample_clip, write_video
from action_jax.tools.transcode_videos import transcode

PIPELINE = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='MultiScaleCrop', input_size=224, scales=(1, 0.875, 0.75, 0.66),
         random_crop=False, max_wh_scale_gap=1),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
         to_bgr=False),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]


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


def clips_per_second(dataset, pipeline, workers: int, batches: int,
                     batch_size: int = 8) -> float:
    it = iter(loader.train_dataset(dataset, pipeline, batch_size=batch_size, seed=0,
                                   num_workers=workers))
    for _ in range(workers + 1):  # start-up (every worker process) is not throughput
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--videos', type=int, default=32)
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--gop', type=int, default=250)
    parser.add_argument('--batches', type=int, default=20)
    parser.add_argument('--transcode', action='store_true',
                        help='also time the videos after transcode_videos (dense-encoded)')
    args = parser.parse_args()
    flags.FLAGS(['data_pipeline'])  # grain's worker processes read absl flags
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        ann = make_videos(root, args.videos, args.frames, args.gop)
        print(f'wrote {args.videos} videos of 340x256x{args.frames} in '
              f'{time.perf_counter() - t0:.1f} s')
        video_sets = [('original', root)]
        if args.transcode:
            dense = os.path.join(root, 'dense')
            t0 = time.perf_counter()
            for i in range(args.videos):
                transcode(os.path.join(root, f'{i:03d}.mp4'), os.path.join(dense, f'{i:03d}.mp4'),
                          short_side=256, gop=16)
            print(f'transcoded them in {time.perf_counter() - t0:.1f} s')
            video_sets.append(('dense-encoded', dense))
        # DecordInit is MMAction2's reader; VideoInit is this project's PyAV reader, which
        # decodes each video once, forward, skipping frames no sampled frame depends on.
        pyav = [dict(type='VideoInit'), *PIPELINE[1:2], dict(type='VideoDecode'), *PIPELINE[3:]]
        for videos, prefix in video_sets:
            size = sum(os.path.getsize(os.path.join(prefix, f'{i:03d}.mp4'))
                       for i in range(args.videos)) / args.videos / 1024
            dataset = VideoDataset(ann, data_prefix=prefix)
            for name, pipeline in (('DecordInit', PIPELINE), ('VideoInit', pyav)):
                for workers in (0, 2):
                    rate = clips_per_second(dataset, pipeline, workers, args.batches)
                    print(f'TSN train pipeline ({name}), {videos} videos ({size:.0f} KiB), '
                          f'{workers} workers: {rate:.1f} clips/s')


if __name__ == '__main__':
    main()
