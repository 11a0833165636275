"""init_recognizer / inference_recognizer on video files, rawframes directories and URLs (a
local http.server), the demo command and the label maps."""
import contextlib
import http.server
import pathlib
import threading
import time

import av
import numpy as np
import portpicker
import pytest
from PIL import Image

from action_jax import demo
from action_jax.apis import (DownloadError, adapt_pipeline, frame_count,
                             inference_recognizer, init_recognizer, load_config)
from action_jax.config import FrozenConfig
from action_jax.data.readers import VideoDecodeError
from action_jax.data.pipeline import Compose
from action_jax.label_map import load_k400_labels, read_label_map
from action_jax.models.preprocessor import DEFAULT_MEAN, DEFAULT_STD
from tolerances import NETWORK_REL, SAME_NETWORK_REL, assert_close_norm

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{REPO / 'tests' / 'configs' / 'fixture_recognizer.py'}:tsn_r18s"
CHECKPOINT = str(REPO / 'tests' / 'fixtures' / 'tsn_r18s.pth')
I3D_CONFIG = f"{REPO / 'tests' / 'configs' / 'fixture_recognizer.py'}:i3d_r50s"
I3D_CHECKPOINT = str(REPO / 'tests' / 'fixtures' / 'i3d_r50s.pth')
FRAMES = 16


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> dict:
    """One synthetic video (48x40, 16 frames) and its extracted frames, plus a label map."""
    from action_jax.data.synthetic import make_synthetic
    root = tmp_path_factory.mktemp('synthetic')
    make_synthetic(root, num_videos=16, rawframes=True, width=48, height=40, frames=FRAMES)
    video = sorted(root.glob('videos_val/*/*.mp4'))[0]
    frames = root / 'rawframes_val' / video.parent.name / video.stem
    labels = root / 'labels10.txt'
    labels.write_text(''.join(f'class {i}\n' for i in range(10)))
    return dict(video=str(video), frames=str(frames), labels=str(labels))


@pytest.fixture(scope='module')
def model():
    return init_recognizer(CONFIG, CHECKPOINT, device='cpu')


def expected_top5(model, results: dict, pipeline) -> list[tuple[int, float]]:
    """The top-5 computed step by step: pipeline, normalisation, model.predict_scores."""
    imgs = Compose(pipeline)(results)['imgs'][None]
    x = (imgs.astype(np.float32) - np.float32(DEFAULT_MEAN)) / np.float32(DEFAULT_STD)
    scores = np.asarray(model.predict_scores(x))[0]
    order = np.argsort(-scores)[:5]
    return [(int(i), float(scores[i])) for i in order]


def assert_same_top5(result, expected):
    assert [i for i, _ in result] == [i for i, _ in expected]
    assert_close_norm([s for _, s in result], [s for _, s in expected], SAME_NETWORK_REL)


def test_init_recognizer_loads_the_checkpoint(model):
    assert isinstance(model.cfg, FrozenConfig)
    with pytest.raises(AttributeError, match='immutable'):
        model.cfg.seed = 1
    assert model.cfg.test_dataloader.dataset.pipeline[0]['type'] == 'DecordInit'
    assert model.cls_head.dropout.deterministic  # eval mode
    assert {d.platform for d in model.cls_head.fc_cls.kernel[...].devices()} == {'cpu'}
    # MMAction2's scores for the fixture input: the weights are the checkpoint's.
    io = np.load(REPO / 'tests' / 'fixtures' / 'tsn_r18s_io.npz')
    x = np.moveaxis(io['input'], 2, -1)
    assert_close_norm(np.asarray(model.predict_scores(x)), io['pred_score'], NETWORK_REL)


def test_init_recognizer_folds_batchnorm_unless_asked_not_to():
    from action_jax.models.fuse import count_batchnorms
    fused = init_recognizer(I3D_CONFIG, I3D_CHECKPOINT, device='cpu')
    plain = init_recognizer(I3D_CONFIG, I3D_CHECKPOINT, device='cpu', fuse=False)
    assert count_batchnorms(fused) == 0 and count_batchnorms(plain) > 0
    io = np.load(REPO / 'tests' / 'fixtures' / 'i3d_r50s_io.npz')
    x = io['input'].transpose(0, 1, 3, 4, 5, 2)  # [N, V, C, T, H, W] -> channels-last
    ref = np.asarray(plain.predict_scores(x))
    assert_close_norm(ref, io['pred_score'], NETWORK_REL)
    assert_close_norm(np.asarray(fused.predict_scores(x)), ref, SAME_NETWORK_REL)


def test_video_file(model, data):
    result = inference_recognizer(model, data['video'])
    assert len(result) == 5
    assert [s for _, s in result] == sorted((s for _, s in result), reverse=True)
    pipeline = model.cfg.test_dataloader.dataset.pipeline
    assert_same_top5(result, expected_top5(
        model, dict(filename=data['video'], label=-1, start_index=0, modality='RGB'), pipeline))


def test_rawframes_directory(model, data):
    assert frame_count(data['frames']) == FRAMES
    pipeline = adapt_pipeline(model.cfg.test_dataloader.dataset.pipeline, 'rawframes')
    assert [s['type'] for s in pipeline[:2]] == ['SampleFrames', 'RawFrameDecode']
    results = dict(frame_dir=data['frames'], total_frames=FRAMES, label=-1, start_index=1,
                   filename_tmpl='img_{:05}.jpg', modality='RGB', offset=0)
    assert_same_top5(inference_recognizer(model, data['frames']),
                     expected_top5(model, results, pipeline))


def test_pipeline_adaptation():
    video = [dict(type='PyAVInit'), dict(type='SampleFrames', clip_len=1),
             dict(type='PyAVDecode'), dict(type='FormatShape', input_format='NCHW')]
    frames = [dict(type='SampleFrames', clip_len=1),
              dict(type='RawFrameDecode', decoding_backend='pillow'),
              dict(type='FormatShape', input_format='NCHW')]
    assert adapt_pipeline(video, 'video') == video
    assert adapt_pipeline(video, 'rawframes') == [video[1], dict(type='RawFrameDecode'),
                                                  video[3]]
    assert adapt_pipeline(frames, 'rawframes') == frames
    assert adapt_pipeline(frames, 'video') == [dict(type='DecordInit'), frames[0],
                                               dict(type='DecordDecode'), frames[2]]


def test_frame_count_follows_the_template(tmp_path):
    for name in ('img_00001.jpg', 'img_00002.jpg', 'x_00001.jpg', 'y_00001.jpg', 'notes.txt',
                 'img_1.png'):
        (tmp_path / name).touch()
    assert frame_count(str(tmp_path)) == 2
    assert frame_count(str(tmp_path), '{}_{:05d}.jpg', modality='Flow') == 1


def test_missing_input_is_named(model, tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing-here.mp4'):
        inference_recognizer(model, str(tmp_path / 'nothing-here.mp4'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(VideoDecodeError, match='no frame files'):
        inference_recognizer(model, str(tmp_path / 'empty'))


class _Handler(http.server.BaseHTTPRequestHandler):
    """/video.mp4 and /junk.mp4 with a Content-Length; /stream.mp4: 3 MiB without one
    (the size is only known while reading); /slow.mp4 answers after 2 s; anything else: 404."""

    video = b''

    def do_GET(self):
        if self.path in ('/video.mp4', '/junk.mp4'):
            body = self.video if self.path == '/video.mp4' else b'no video here\n' * 200
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == '/stream.mp4':
            self.send_response(200)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            with contextlib.suppress(ConnectionError):  # the client stops reading early
                for _ in range(3):
                    self.wfile.write(b'\0' * 2**20)
        elif self.path == '/slow.mp4':
            time.sleep(2)
            with contextlib.suppress(ConnectionError):  # the client has given up
                self.send_error(404)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def server(data):
    _Handler.video = pathlib.Path(data['video']).read_bytes()
    port = portpicker.pick_unused_port()
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', port), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{port}'
    httpd.shutdown()
    httpd.server_close()
    portpicker.return_port(port)


@pytest.fixture
def download_dir(tmp_path, monkeypatch):
    """Temporary downloads land here, so the tests can see that none is left behind."""
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    return tmp_path


def test_url(model, data, server, download_dir):
    assert_same_top5(inference_recognizer(model, f'{server}/video.mp4'),
                     inference_recognizer(model, data['video']))
    assert not list(download_dir.iterdir())


@pytest.mark.parametrize('path, kwargs, error, match', [
    ('/missing.mp4', {}, DownloadError, 'HTTP 404'),
    ('/junk.mp4', {}, VideoDecodeError, 'junk.mp4: not a decodable video'),
    ('/video.mp4', dict(max_download_bytes=1000), DownloadError, 'exceed the limit of 1000'),
    ('/stream.mp4', dict(max_download_bytes=2**20), DownloadError, 'exceeds the limit'),
    ('/slow.mp4', dict(timeout=0.5), DownloadError, 'timed out after 0.5 s'),
])
def test_url_errors(model, server, download_dir, path, kwargs, error, match):
    with pytest.raises(error, match=match):
        inference_recognizer(model, server + path, **kwargs)
    assert not list(download_dir.iterdir())


def test_demo_writes_mp4_and_gif(data, tmp_path, capsys):
    names = read_label_map(data['labels'])
    for out in (tmp_path / 'out.mp4', tmp_path / 'out.gif'):
        result = demo.main([CONFIG, CHECKPOINT, data['video'], data['labels'],
                            '--out-filename', str(out), '--fps', '8'])
        assert [name for name, _ in result] and all(name in names for name, _ in result)
        printed = capsys.readouterr().out
        assert printed.startswith('The top-5 labels with corresponding scores are:')
        assert f'{result[0][0]}: ' in printed
    with av.open(str(tmp_path / 'out.mp4')) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    with Image.open(tmp_path / 'out.gif') as gif:
        assert gif.n_frames == FRAMES and gif.size == (48, 40)
    assert len(frames) == FRAMES and frames[0].shape == (40, 48, 3)
    # The label is drawn in the top-left corner; the bottom-right corner is the video's.
    original = demo.read_frames(data['video'])
    corner = (slice(0, 14), slice(0, 30))
    assert np.abs(frames[0][corner].astype(int) - original[0][corner]).max() > 50
    assert np.abs(frames[0][-8:, -8:].astype(int) - original[0][-8:, -8:]).mean() < 10


def test_demo_target_resolution_and_rawframes(data, tmp_path):
    out = tmp_path / 'frames.gif'
    demo.main([CONFIG, CHECKPOINT, data['frames'], data['labels'], '--out-filename', str(out),
               '--target-resolution', '96', '-1', '--font-color', '255,0,0'])
    with Image.open(out) as gif:
        assert gif.n_frames == FRAMES and gif.size == (96, 80)


def test_label_maps(tmp_path):
    k400 = load_k400_labels()
    assert len(k400) == len(set(k400)) == 400
    assert (k400[0], k400[207], k400[-1]) == ('abseiling', 'parkour', 'zumba')
    path = tmp_path / 'labels.txt'
    path.write_text('walking\n running \n\n')
    assert read_label_map(path) == ['walking', 'running']
    path.write_text('\n')
    with pytest.raises(ValueError, match='empty'):
        read_label_map(path)


def test_load_config_passes_the_argument():
    path = CONFIG.rsplit(':', 1)[0]
    assert load_config(f'{path}:i3d_r50s').model.type == 'Recognizer3D'
    assert load_config(path).model.type == 'Recognizer2D'
    with pytest.raises(FileNotFoundError, match='no-such-config.py'):
        load_config('no-such-config.py')
