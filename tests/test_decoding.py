"""Video readers and decode transforms: exact frames, every index order, broken files."""
import logging

import av
import numpy as np
import pytest
from PIL import Image

from action_jax.data import readers
from action_jax.data.decoding import (TRANSFORMS, DecordDecode, DecordInit, PyAVDecode, PyAVInit,
                                      RawFrameDecode, VideoDecode, VideoInit)
from action_jax.data.readers import DecordReader, PyAVReader, VideoDecodeError, open_video
from action_jax.data.synthetic import write_video

T, H, W, GOP = 48, 64, 96, 16
BACKENDS = ('decord', 'pyav')
# name -> (codec, muxer options); all with a keyframe every GOP frames.
FORMATS = {
    'mp4': ('libx264', None),  # B-frames, moov at the end (FFmpeg's default)
    'faststart.mp4': ('libx264', {'movflags': 'faststart'}),  # moov first
    'webm': ('libvpx-vp9', None),
    'avi': ('mpeg4', None),
    'hevc.mp4': ('libx265', None),  # open GOPs: leading frames after each keyframe
    'vp8.webm': ('libvpx', None),
}


def _content() -> np.ndarray:
    """Moving stripes and a moving block over noise: every frame differs."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        img = np.stack([(xx * 3 + 5 * t) % 256, (yy * 4 + 2 * t) % 256,
                        ((xx + 2 * t) // 12 % 2) * 180], axis=-1).astype(float)
        img[10:30, t:t + 20] = (250, 20, 20)
        frames[t] = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
    return frames


def _decode_all(path) -> np.ndarray:
    """Ground truth: every frame in decoder output order."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format='rgb24', threads=1)
                         for f in container.decode(video=0)])


@pytest.fixture(scope='session')
def videos(tmp_path_factory):
    """{format: (path, all decoded frames)}."""
    root = tmp_path_factory.mktemp('videos')
    frames = _content()
    out = {}
    for name, (codec, muxer) in FORMATS.items():
        path = root / f'clip.{name}'
        write_video(path, frames, 30, codec=codec, gop_size=GOP, container_options=muxer)
        out[name] = (path, _decode_all(path))
    return out


@pytest.mark.parametrize('fmt', FORMATS)
def test_backends_agree_with_full_decode(videos, fmt):
    path, ref = videos[fmt]
    assert ref.shape == (T, H, W, 3)
    for backend in BACKENDS:
        reader = open_video(path, backend, fallback=False)
        assert reader.backend == backend
        assert len(reader) == T and reader.fps == pytest.approx(30)
        if backend == 'pyav' or fmt != 'hevc.mp4':  # see test_decord_open_gop_bug
            assert list(reader.keyframes) == list(range(0, T, GOP))
        np.testing.assert_array_equal(reader.get_frames(np.arange(T)), ref)


def _index_cases(seed: int = 1) -> list:
    rng = np.random.default_rng(seed)
    cases = [[T - 1], [0], [5, 5, 5], list(range(T - 1, -1, -7)),
             [GOP - 1, GOP, 2 * GOP - 1, 2 * GOP],  # both sides of keyframes
             np.array([[3, 40], [17, 3]])]  # 2-D, as [clips, clip_len]
    return cases + [rng.integers(0, T, rng.integers(1, 12)) for _ in range(25)]


@pytest.mark.parametrize('fmt,backend', [(f, b) for f in FORMATS
                                         for b in (*BACKENDS, 'pyav-seek')
                                         if (f, b) != ('hevc.mp4', 'decord')])
def test_unsorted_repeated_indices_are_exact(videos, fmt, backend, caplog, monkeypatch):
    path, ref = videos[fmt]
    if backend == 'pyav-seek':  # videos too large to keep their packets: read and seek again
        monkeypatch.setattr(readers, '_KEEP_PACKETS_MAX_BYTES', 0)
        backend = 'pyav'
    reader = open_video(path, backend, fallback=False)
    with caplog.at_level(logging.DEBUG, logger=readers.__name__):
        for inds in _index_cases():
            flat = np.asarray(inds).reshape(-1)
            np.testing.assert_array_equal(reader.get_frames(inds), ref[flat])
    # PyAV's fast pass (seeking, skipping non-reference frames) never needed the plain one.
    assert not caplog.records


def test_decord_open_gop_bug(videos):
    """decord numbers open-GOP keyframes in decode order (13, 29 instead of 16, 32), so a
    request spanning one returns wrong frames - in MMAction2 too.  PyAV is exact there."""
    path, ref = videos['hevc.mp4']
    decord_reader = open_video(path, 'decord', fallback=False)
    assert list(decord_reader.keyframes) != list(range(0, T, GOP))
    inds = [2, 14]
    assert not np.array_equal(decord_reader.get_frames(inds), ref[inds])
    np.testing.assert_array_equal(open_video(path, 'pyav').get_frames(inds), ref[inds])


def test_pyav_multi_thread_is_exact(videos):
    path, ref = videos['mp4']
    reader = PyAVReader(path)
    reader.multi_thread = True
    inds = [40, 2, 17, 17, 33, 0]
    np.testing.assert_array_equal(reader.get_frames(inds), ref[inds])


@pytest.mark.parametrize('backend', BACKENDS)
def test_from_bytes(videos, backend):
    path, ref = videos['mp4']
    reader = open_video(path.read_bytes(), backend, fallback=False)
    assert reader.name == '<bytes>' and len(reader) == T
    np.testing.assert_array_equal(reader.get_frames([9, 1, 9]), ref[[9, 1, 9]])
    with pytest.raises(VideoDecodeError, match='clip-name'):
        open_video(b'not a video', backend, name='clip-name')


@pytest.mark.parametrize('backend', BACKENDS)
def test_index_out_of_range(videos, backend):
    path, _ = videos['mp4']
    reader = open_video(path, backend)
    for bad in ([T], [-1], [0, T + 5]):
        with pytest.raises(VideoDecodeError, match='out of range') as info:
            reader.get_frames(bad)
        assert str(path) in str(info.value)


# ------------------------------------------------------------------- broken videos

def _cut(data: bytes, frac: float) -> bytes:
    return data[:int(len(data) * frac)]


def _damage(data: bytes, frac: float) -> bytes:
    out = bytearray(data)
    start = int(len(data) * frac)
    out[start:start + 256] = np.random.default_rng(int(frac * 100)).bytes(256)
    return bytes(out)


# (source format, how it is broken, outcome with decord, outcome with PyAV):
#   'error'     VideoDecodeError naming the file;
#   'exact'     all frames, exactly (a cut AVI that only lost its trailing index);
#   'prefix'    a cut WebM has no frame count: a shorter video of exactly the first frames;
#   'concealed' damaged data the decoder conceals without any flag: right shape, wrong pixels.
# PyAV sees damage that FFmpeg flags (corrupt frames, missing packets) that decord conceals.
BROKEN = [
    ('mp4', 'cut 0.05', 'error', 'error'), ('mp4', 'cut 0.5', 'error', 'error'),
    ('mp4', 'cut 0.95', 'error', 'error'),
    ('faststart.mp4', 'cut 0.05', 'error', 'error'),
    ('faststart.mp4', 'cut 0.5', 'error', 'error'),
    ('faststart.mp4', 'cut 0.95', 'error', 'error'),
    ('avi', 'cut 0.5', 'error', 'error'), ('avi', 'cut 0.8', 'error', 'error'),
    ('avi', 'cut 0.95', 'exact', 'exact'),
    ('webm', 'cut 0.5', 'prefix', 'prefix'), ('webm', 'cut 0.8', 'prefix', 'prefix'),
    ('mp4', 'damage 0.3', 'concealed', 'error'), ('mp4', 'damage 0.5', 'error', 'error'),
    ('mp4', 'damage 0.7', 'concealed', 'concealed'),
    ('faststart.mp4', 'damage 0.5', 'concealed', 'error'),
    ('avi', 'damage 0.5', 'concealed', 'error'), ('avi', 'damage 0.7', 'error', 'error'),
    ('webm', 'damage 0.5', 'concealed', 'concealed'), ('webm', 'damage 0.6', 'error', 'error'),
]


def _break(videos, tmp_path, fmt, how):
    path, ref = videos[fmt]
    kind, frac = how.split()
    data = (_cut if kind == 'cut' else _damage)(path.read_bytes(), float(frac))
    broken = tmp_path / f'broken_{kind}.{fmt}'
    broken.write_bytes(data)
    return broken, ref


def _outcome(path, backend, ref) -> str:
    try:
        reader = open_video(path, backend, fallback=False)
        frames = reader.get_frames(np.arange(len(reader)))
    except VideoDecodeError as exc:
        assert exc.filename == str(path) and str(path) in str(exc)
        return 'error'
    assert frames.shape[1:] == (H, W, 3) and frames.dtype == np.uint8
    if len(frames) == T:
        return 'exact' if np.array_equal(frames, ref) else 'concealed'
    assert 0 < len(frames) < T
    return 'prefix' if np.array_equal(frames, ref[:len(frames)]) else 'concealed'


@pytest.mark.parametrize('fmt,how,with_decord,with_pyav', BROKEN)
def test_broken_videos(videos, tmp_path, fmt, how, with_decord, with_pyav):
    path, ref = _break(videos, tmp_path, fmt, how)
    assert _outcome(path, 'decord', ref) == with_decord
    assert _outcome(path, 'pyav', ref) == with_pyav


@pytest.mark.parametrize('data', [b'', b'garbage' * 500, None])
@pytest.mark.parametrize('backend', BACKENDS)
def test_empty_garbage_missing(tmp_path, data, backend):
    path = tmp_path / 'bad.mp4'
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(VideoDecodeError, match=str(path)):
        open_video(path, backend)
    results = dict(filename=str(path), frame_inds=np.array([0]))
    with pytest.raises(VideoDecodeError, match=str(path)):
        VideoInit(backend)(results)


def test_error_pickles():
    import pickle
    exc = pickle.loads(pickle.dumps(VideoDecodeError('a.mp4', 'bad')))
    assert isinstance(exc, RuntimeError) and str(exc) == 'cannot decode a.mp4: bad'


# ------------------------------------------------------------------------- fallback

@pytest.fixture(scope='session')
def av1_video(tmp_path_factory):
    """AV1 in MP4: decord 0.6's FFmpeg has no AV1 decoder, PyAV's has (libdav1d)."""
    path = tmp_path_factory.mktemp('av1') / 'clip.mp4'
    write_video(path, _content()[:20], 30, codec='libsvtav1')
    return path, _decode_all(path)


def test_decord_falls_back_to_pyav(av1_video, caplog):
    path, ref = av1_video
    with pytest.raises(VideoDecodeError, match='decord'):
        open_video(path, 'decord', fallback=False)
    with caplog.at_level(logging.DEBUG, logger=readers.__name__):
        results = DecordInit()(dict(filename=str(path)))
    assert any('decord cannot open' in r.getMessage() for r in caplog.records)
    assert isinstance(results['video_reader'], PyAVReader) and results['total_frames'] == 20
    # PyAV's AV1 decoder reads skip_frame once, so the reader must not use it there.
    results['frame_inds'] = np.array([7, 3, 19, 3])
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=readers.__name__):
        np.testing.assert_array_equal(DecordDecode()(results)['imgs'], ref[[7, 3, 19, 3]])
    assert not caplog.records  # no plain-pass retry was needed


def test_streams_without_pts_are_counted(tmp_path):
    """A raw H.264 stream has no timestamps: decord cannot open it; PyAV decodes from the
    start and counts frames."""
    path = tmp_path / 'clip.h264'
    write_video(path, _content(), 30, gop_size=GOP)
    ref = _decode_all(path)
    results = DecordInit()(dict(filename=str(path)))
    reader = results['video_reader']
    assert isinstance(reader, PyAVReader) and len(reader) == T
    for inds in _index_cases(seed=2):
        flat = np.asarray(inds).reshape(-1)
        np.testing.assert_array_equal(reader.get_frames(inds), ref[flat])


@pytest.mark.parametrize('keep_packets', [True, False])
def test_plain_pass_when_seeking_misses(tmp_path, caplog, monkeypatch, keep_packets):
    """Seeking in MPEG-TS lands past the keyframe; the reader notices and decodes from the
    start (kept packets jump to the keyframe's own packet and need no plain pass).  decord
    returns wrong frames there without a word."""
    if not keep_packets:
        monkeypatch.setattr(readers, '_KEEP_PACKETS_MAX_BYTES', 0)
    path = tmp_path / 'clip.ts'
    write_video(path, _content(), 30, codec='mpeg2video', gop_size=GOP)
    ref = _decode_all(path)
    inds = [40, 3, 17]
    with caplog.at_level(logging.DEBUG, logger=readers.__name__):
        np.testing.assert_array_equal(open_video(path, 'pyav').get_frames(inds), ref[inds])
    assert any('decoding plainly' in r.getMessage() for r in caplog.records) != keep_packets
    assert not np.array_equal(open_video(path, 'decord').get_frames(inds), ref[inds])


def test_decord_decode_failure_goes_to_pyav(videos):
    path, ref = videos['mp4']

    class Broken:
        def get_batch(self, inds):
            raise readers.decord.DECORDError('simulated decoder failure')

    reader = DecordReader(path)
    reader._vr = Broken()
    np.testing.assert_array_equal(reader.get_frames([4, 2]), ref[[4, 2]])
    strict = DecordReader(path, fallback=False)
    strict._vr = Broken()
    with pytest.raises(VideoDecodeError, match='simulated'):
        strict.get_frames([4, 2])


# ----------------------------------------------------------------------- transforms

@pytest.mark.parametrize('init,decode', [(DecordInit(), DecordDecode()),
                                         (PyAVInit(), PyAVDecode()),
                                         (VideoInit('decord'), VideoDecode()),
                                         (VideoInit(), PyAVDecode(multi_thread=True))])
def test_init_decode_transforms(videos, init, decode):
    path, ref = videos['mp4']
    results = init(dict(filename=str(path), start_index=0), np.random.default_rng(0))
    assert results['total_frames'] == T and results['avg_fps'] == pytest.approx(30)
    inds = np.array([[12, 3, 3], [47, 0, 20]])
    results['frame_inds'] = inds
    results = decode(results)
    assert 'video_reader' not in results
    np.testing.assert_array_equal(results['frame_inds'], inds.reshape(-1))
    np.testing.assert_array_equal(results['imgs'], ref[inds.reshape(-1)])
    assert results['original_shape'] == results['img_shape'] == (H, W)


def test_video_bytes_and_missing_extension(videos, tmp_path):
    path, ref = videos['mp4']
    results = VideoInit()(dict(filename='nowhere/clip.mp4', video_bytes=path.read_bytes()))
    results['frame_inds'] = np.array([1])
    np.testing.assert_array_equal(VideoDecode()(results)['imgs'], ref[[1]])
    (tmp_path / 'clip.mp4').write_bytes(path.read_bytes())
    results = DecordInit()(dict(filename=str(tmp_path / 'clip')))  # '.mp4' is assumed
    assert results['total_frames'] == T


def test_efficient_mode_returns_keyframes(videos):
    path, ref = videos['mp4']
    for init, decode in ((DecordInit(), DecordDecode('efficient')),
                         (PyAVInit(), PyAVDecode(mode='efficient'))):
        results = init(dict(filename=str(path)))
        results['frame_inds'] = np.array([20, 3, 47, 16])
        expected = ref[[16, 0, 32, 16]]
        np.testing.assert_array_equal(decode(results)['imgs'], expected)


def test_gt_bboxes_scaled_to_pixels(videos):
    path, _ = videos['mp4']
    results = PyAVInit()(dict(filename=str(path)))
    results.update(frame_inds=np.array([0]), gt_bboxes=np.array([[0.5, 0.25, 1.0, 1.0]]),
                   proposals=np.array([[0.0, 0.0, 0.5, 0.5]]))
    results = PyAVDecode()(results)
    np.testing.assert_allclose(results['gt_bboxes'], [[W / 2, H / 4, W, H]])
    np.testing.assert_allclose(results['proposals'], [[0, 0, W / 2, H / 2]])


def test_registry_and_reprs():
    assert set(TRANSFORMS) == {'VideoInit', 'VideoDecode', 'DecordInit', 'DecordDecode',
                               'PyAVInit', 'PyAVDecode', 'RawFrameDecode'}
    assert repr(DecordInit()) == 'DecordInit(io_backend=disk, num_threads=1)'
    assert repr(DecordDecode()) == 'DecordDecode(mode=accurate)'
    assert repr(PyAVInit()) == 'PyAVInit(io_backend=disk)'
    assert repr(PyAVDecode()) == 'PyAVDecode(multi_thread=False, mode=accurate)'
    assert repr(RawFrameDecode()) == 'RawFrameDecode(io_backend=disk, decoding_backend=cv2)'
    assert 'pillow' in repr(RawFrameDecode(decoding_backend='pillow'))
    with pytest.raises(ValueError):
        DecordInit(io_backend='petrel')
    with pytest.raises(ValueError):
        DecordDecode(mode='fast')


# ------------------------------------------------------------------------ raw frames

@pytest.fixture
def frame_dir(tmp_path):
    """img_00001.png ... img_00010.png, frame k a flat grey of 20 * k (exact in PNG);
    flow_x_00001.jpg / flow_y_... flat 10 * k and 200 - 10 * k."""
    for k in range(1, 11):
        Image.new('RGB', (8, 6), (20 * k,) * 3).save(tmp_path / f'img_{k:05}.png')
        Image.new('L', (8, 6), 10 * k).save(tmp_path / f'flow_x_{k:05}.jpg', quality=100)
        Image.new('L', (8, 6), 200 - 10 * k).save(tmp_path / f'flow_y_{k:05}.jpg', quality=100)
    return tmp_path


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_rawframes_start_index_and_offset(frame_dir, backend):
    decode = RawFrameDecode(decoding_backend=backend)
    # SampleFrames has added start_index=1, so index 1 is img_00001.
    results = decode(dict(frame_dir=str(frame_dir), filename_tmpl='img_{:05}.png',
                          frame_inds=np.array([1, 3, 3, 2]), modality='RGB'))
    assert results['imgs'].shape == (4, 6, 8, 3)
    assert results['original_shape'] == results['img_shape'] == (6, 8)
    np.testing.assert_array_equal(results['imgs'][:, 0, 0, 0], [20, 60, 60, 40])
    results = decode(dict(frame_dir=str(frame_dir), filename_tmpl='img_{:05}.png',
                          frame_inds=np.array([[1], [4]]), offset=5))
    np.testing.assert_array_equal(results['imgs'][:, 0, 0, 0], [120, 180])


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_rawframes_flow_and_default_template(frame_dir, backend):
    results = RawFrameDecode(decoding_backend=backend)(dict(
        frame_dir=str(frame_dir), filename_tmpl='flow_{}_{:05}.jpg',
        frame_inds=np.array([2, 5]), modality='Flow'))
    assert results['imgs'].shape == (4, 6, 8)
    # JPEG (quality 100) rounds grey levels through its DCT: 1 level.
    np.testing.assert_allclose(results['imgs'][:, 0, 0], [20, 180, 50, 150], atol=1)
    Image.new('RGB', (8, 6), (7, 8, 9)).save(frame_dir / 'img_00003.jpg', quality=100)
    results = RawFrameDecode(decoding_backend=backend)(dict(frame_dir=str(frame_dir),
                                                            frame_inds=np.array([3])))
    # ... and colour through YCbCr with subsampled chroma: 2 levels.
    np.testing.assert_allclose(results['imgs'][0, 0, 0], [7, 8, 9], atol=2)


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_rawframes_missing_and_corrupt(frame_dir, backend):
    decode = RawFrameDecode(decoding_backend=backend)
    results = dict(frame_dir=str(frame_dir), filename_tmpl='img_{:05}.png',
                   frame_inds=np.array([1, 11]))
    with pytest.raises(VideoDecodeError, match='img_00011.png'):
        decode(results)
    (frame_dir / 'img_00002.png').write_bytes(b'\x89PNG garbage')
    results['frame_inds'] = np.array([2])
    with pytest.raises(VideoDecodeError, match='img_00002.png'):
        decode(results)
