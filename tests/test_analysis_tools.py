"""The analysis tools: get_flops, analyze_logs, confusion_matrix, report_accuracy and
browse_dataset, on hand-made inputs with hand-computed answers."""
import csv
import json
import math
import pathlib
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from action_jax.tools import (analyze_logs, browse_dataset, confusion_matrix, get_flops,
                              report_accuracy)
from tolerances import assert_close_ulps

REPO = pathlib.Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def assert_png(path, min_bytes=5_000):
    data = pathlib.Path(path).read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > min_bytes
    Image.open(path).verify()


# --- get_flops -------------------------------------------------------------------------------

def _complexity(name, shape=None):
    config = get_flops.load_config_arg(str(REPO / 'configs' / f'{name}.py'))
    input_shape = get_flops.input_shape(config, shape)
    params, flops = get_flops.model_complexity(config.model.to_dict(), input_shape)
    return input_shape, params, flops


# MMAction2's model zoo: FLOPs (MACs) of one test view, parameters of the K400 models.
@pytest.mark.parametrize('name, shape, gflops, params', [
    ('tsn_k400', (1, 25, 224, 224, 3), 102.7, 24_327_632),
    ('tsm_k400', (1, 8, 224, 224, 3), 32.88, 24_327_632),
    ('i3d_k400', (1, 32, 256, 256, 3), 43.5, 28_043_472),
])
def test_get_flops_matches_mmaction2(name, shape, gflops, params):
    input_shape, param_counts, flops = _complexity(name)
    assert input_shape == shape  # the default: one view of the test pipeline
    assert sum(param_counts.values()) == params  # element counts: integers, exact
    # MMAction2 prints 3-4 significant digits; the brief's bound is 2%.
    assert sum(flops.values()) / 1e9 == pytest.approx(gflops, rel=0.02)


def test_get_flops_per_module_by_hand():
    _, params, flops = _complexity('tsm_k400', [112])  # 8 frames at 112 x 112
    totals = get_flops.totals(flops, max_depth=2)
    frames, out_hw = 8, 56 * 56  # conv1: 7x7 stride 2, 3 -> 64 channels
    # Integer counts (no float arithmetic), so exact. conv MACs + fvcore's 2 per BatchNorm
    # output element.
    assert totals[('backbone', 'conv1')] == frames * out_hw * 64 * (7 * 7 * 3 + 2)
    assert totals[('cls_head', 'fc_cls')] == frames * 2048 * 400  # per frame, then consensus
    assert get_flops.totals(params, 2)[('cls_head', 'fc_cls')] == 2048 * 400 + 400
    assert totals[()] == sum(flops.values())


def test_get_flops_counts_the_math_not_the_layout():
    # i3d_synthetic computes its 3D convs as sums of 2D ones (Conv3dAs2d): the same MACs.
    config = get_flops.load_config_arg(str(REPO / 'configs' / 'i3d_synthetic.py'))
    shape = get_flops.input_shape(config, None)
    model = config.model.to_dict()
    as_2d = get_flops.model_complexity(model, shape)[1]
    model['backbone']['conv_cfg'] = dict(type='Conv3d')
    assert sum(as_2d.values()) == sum(get_flops.model_complexity(model, shape)[1].values())


def test_get_flops_cli_prints_mmaction2_units(capsys):
    result = get_flops.main([str(REPO / 'configs' / 'tsm_k400.py'), '--max-depth', '1'])
    out = capsys.readouterr().out
    assert 'Flops: 32.88G' in out and 'Params: 24.33M' in out and 'MACs' in out
    assert result['shape'] == (1, 8, 224, 224, 3)
    with pytest.raises(SystemExit, match='give 1, 2, 4 or 5'):
        get_flops.main([str(REPO / 'configs' / 'tsm_k400.py'), '--shape', '1', '2', '3'])
    with pytest.raises(SystemExit, match=r'input \(1, 7, 224, 224, 3\): cannot reshape'):
        get_flops.main([str(REPO / 'configs' / 'tsm_k400.py'), '--shape', '7', '3', '224', '224'])
    with pytest.raises(SystemExit, match="model type 'BMN'; get_flops counts recognizers"):
        get_flops.main([str(REPO / 'configs' / 'bmn_anet.py')])
    with pytest.raises(SystemExit, match='2'):
        get_flops.main(['no_such_config.py'])
    assert "config file 'no_such_config.py' does not exist" in capsys.readouterr().err


# --- analyze_logs ----------------------------------------------------------------------------

def _write_run(path, records):
    path.mkdir(parents=True, exist_ok=True)
    (path / 'scalars.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    return str(path)


@pytest.fixture
def runs(tmp_path):
    def train(step, loss, time):
        return {'step': step, 'loss': loss, 'lr': 0.01, 'clips_per_sec': 4.0, 'time': time}
    # Epochs of 3 steps: 1 s/iter in epoch 1, 2 s/iter in epoch 2; 8 s between them
    # (validation); the test record at the end is not an iteration.
    a = [train(1, 2.0, 0.0), train(2, 1.8, 1.0), train(3, 1.5, 2.0),
         {'step': 3, 'val/acc/top1': 0.25, 'time': 5.0},
         train(4, 1.2, 10.0), train(5, 1.0, 12.0), train(6, 0.9, 14.0),
         {'step': 6, 'val/acc/top1': 0.5, 'time': 15.0},
         {'step': 6, 'test/acc/top1': 0.5, 'time': 16.0}]
    b = [{k: v for k, v in r.items() if k != 'time'} for r in a]
    return _write_run(tmp_path / 'run_a', a), _write_run(tmp_path / 'run_b', b)


def test_plot_curve_png_and_svg(runs, tmp_path):
    png = str(tmp_path / 'curves.png')
    analyze_logs.main(['plot_curve', *runs, '--keys', 'loss', 'acc/top1', '--out', png,
                       '--title', 'two runs', '--legend', 'A', 'B'])
    assert_png(png)
    svg = tmp_path / 'curves.svg'
    analyze_logs.main(['plot_curve', runs[0], '--keys', 'loss', '--out', str(svg)])
    text = svg.read_text()
    assert text.startswith('<?xml') and '<svg' in text and len(text) > 5_000


def test_plot_curve_errors(runs, tmp_path):
    with pytest.raises(SystemExit, match=r"run_a/scalars.jsonl has no key 'acc/top5'"):
        analyze_logs.main(['plot_curve', runs[0], '--keys', 'acc/top5',
                           '--out', str(tmp_path / 'x.png')])
    with pytest.raises(SystemExit, match='no such file'):
        analyze_logs.main(['plot_curve', str(tmp_path / 'missing'), '--keys', 'loss'])
    with pytest.raises(SystemExit, match='--legend: 1 names for 2'):
        analyze_logs.main(['plot_curve', *runs, '--keys', 'loss', '--legend', 'A'])
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'scalars.jsonl').write_text('{"step": 1, "loss": 1}\n{"loss": 2}\n')
    with pytest.raises(SystemExit, match=r'scalars.jsonl:2: not a'):
        analyze_logs.main(['plot_curve', str(bad), '--keys', 'loss'])


def test_cal_train_time(runs, capsys):
    (report,) = analyze_logs.main(['cal_train_time', runs[0], '--steps-per-epoch', '3'])
    # Differences of small integers: exact in floating point.
    assert report == dict(slowest_epoch=2, slowest=2.0, fastest_epoch=1, fastest=1.0,
                          std=0.5, average=1.5)
    assert 'average iter time: 1.5000 s/iter' in capsys.readouterr().out
    (report,) = analyze_logs.main(['cal_train_time', runs[0], '--steps-per-epoch', '3',
                                   '--include-outliers'])
    assert report['slowest'] == 4.0  # (8 + 2 + 2) / 3
    with pytest.raises(SystemExit, match="has no 'time' field"):
        analyze_logs.main(['cal_train_time', runs[1]])


# --- report_accuracy -------------------------------------------------------------------------

LABELS = [0, 1, 2, 0]
# A is right on videos 0 and 1, B on 2 and 3; their sum is right on all four.
SCORES_A = [[2., 0., 0.], [0., 2., 0.], [1., 0., 0.], [0., 1., 0.]]
SCORES_B = [[0., 0., 1.], [0., 0., 1.], [0., 0., 2.], [2., 0., 0.]]


def _write_results(path, scores, labels=LABELS):
    records = [{'pred_score': np.asarray(s, np.float32), 'gt_label': np.int64(l)}
               for s, l in zip(scores, labels)]
    if str(path).endswith('.json'):
        path.write_text(json.dumps([{'pred_score': np.asarray(r['pred_score']).tolist(),
                                     'gt_label': int(r['gt_label'])} for r in records]))
    else:
        path.write_bytes(pickle.dumps(records))
    return str(path)


def test_report_accuracy_fuses_scores(tmp_path, capsys):
    a = _write_results(tmp_path / 'a.pkl', SCORES_A)
    b = _write_results(tmp_path / 'b.json', SCORES_B)
    fused, labels = report_accuracy.fuse([a, b], [1, 1])
    # 1 x a + 1 x b: one rounded multiply-add per score, at most 1 ulp from the exact sum.
    assert_close_ulps(fused, np.add(SCORES_A, SCORES_B), 1)
    np.testing.assert_array_equal(labels, LABELS)
    metrics = report_accuracy.main(['--scores', a, b, '--coefficients', '1', '1'])
    assert metrics == dict(mean_class_accuracy=1.0, top1=1.0, top5=1.0)
    assert 'Top 1 Accuracy: 1.0000' in capsys.readouterr().out
    # A alone: predictions 0, 1, 0, 1 -> videos 0 and 1 right; classes 0: 1/2, 1: 1/1, 2: 0/1.
    metrics = report_accuracy.main(['--preds', a, b, '--coefficients', '1', '0'])
    assert metrics == dict(mean_class_accuracy=0.5, top1=0.5, top5=1.0)


def test_report_accuracy_softmax(tmp_path):
    path = _write_results(tmp_path / 's.pkl', [[0.0, math.log(3.0)]], labels=[1])
    fused, _ = report_accuracy.fuse([path], [2.0], apply_softmax=True)
    # 2 * softmax = 2 * (1/4, 3/4). The file holds ln 3 as float32 (off by <= half a float32
    # ulp of 1.1, i.e. < 2^-24 absolute), which moves each softmax value by less than that
    # relative; the float64 arithmetic after it adds a few float64 ulps.
    np.testing.assert_allclose(fused, [[0.5, 1.5]], rtol=np.finfo(np.float32).eps)


def test_report_accuracy_errors(tmp_path):
    a = _write_results(tmp_path / 'a.pkl', SCORES_A)
    short = _write_results(tmp_path / 'short.pkl', SCORES_B[:3], LABELS[:3])
    with pytest.raises(SystemExit, match='different videos'):
        report_accuracy.main(['--scores', a, short])
    with pytest.raises(SystemExit, match='2 score files but 1 coefficients'):
        report_accuracy.main(['--scores', a, a, '--coefficients', '1'])
    with pytest.raises(SystemExit, match='missing.pkl: no such file'):
        report_accuracy.main(['--scores', str(tmp_path / 'missing.pkl')])
    (tmp_path / 'nolabel.json').write_text(json.dumps([{'pred_score': [1, 0]}]))
    with pytest.raises(SystemExit, match='video 0 has no gt_label'):
        report_accuracy.main(['--scores', str(tmp_path / 'nolabel.json')])


# --- confusion_matrix ------------------------------------------------------------------------

def test_confusion_matrix(tmp_path, capsys):
    # Predictions (arg-max) 0, 1, 1, 1, 0 for labels 0, 0, 1, 1, 2.
    scores = [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0]]
    results = _write_results(tmp_path / 'r.pkl', scores, [0, 0, 1, 1, 2])
    label_map = tmp_path / 'labels.txt'
    label_map.write_text('jump\nrun\nsit\n')
    out, table = tmp_path / 'cm.png', tmp_path / 'acc.csv'
    result = confusion_matrix.main([results, '--label-map', str(label_map), '--out', str(out),
                                    '--normalize', '--csv', str(table)])
    np.testing.assert_array_equal(result['confusion_matrix'], [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    # correct / videos: one division per class, within 1 ulp.
    assert_close_ulps(result['per_class_accuracy'], [0.5, 1.0, 0.0], 1)
    assert_png(out)
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert [(r['name'], r['videos'], r['correct']) for r in rows] == [
        ('jump', '2', '1'), ('run', '2', '2'), ('sit', '1', '0')]
    assert_close_ulps([float(r['accuracy']) for r in rows], [0.5, 1.0, 0.0], 1)
    assert 'mean class accuracy (classes with videos): 0.5000' in capsys.readouterr().out
    label_map.write_text('jump\nrun\n')
    with pytest.raises(SystemExit, match='2 class names for 3 scored classes'):
        confusion_matrix.main([results, '--label-map', str(label_map)])
    label_map.write_text('jump\nrun\nsit\nswim\n')  # another data set's classes
    with pytest.raises(SystemExit, match='4 class names for 3 scored classes'):
        confusion_matrix.main([results, '--label-map', str(label_map)])
    with pytest.raises(SystemExit, match='give a file name ending in'):
        confusion_matrix.main([results, '--out', str(tmp_path / 'cm.jpg')])


# --- browse_dataset --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    from action_jax.data.synthetic import make_synthetic
    out = tmp_path_factory.mktemp('synthetic')
    make_synthetic(str(out), num_videos=16, seed=0, width=48, height=40, frames=16)
    return out


def test_browse_dataset(data_dir, tmp_path):
    config = f'{REPO / "tests" / "configs" / "tsn_tiny.py"}:{data_dir}'
    gifs = browse_dataset.main([config, '--out', str(tmp_path), '--num-samples', '2'])
    names = (data_dir / 'label_map.txt').read_text().split()
    train_list = (data_dir / 'synthetic_train_list_videos.txt').read_text().splitlines()
    labels = [int(line.split()[-1]) for line in train_list]
    # Samples spread over the list: its first and last video, named by their class.
    assert [pathlib.Path(p).name for p in gifs] == [
        f'000_{names[labels[0]]}.gif', f'{len(labels) - 1:03d}_{names[labels[-1]]}.gif']
    with Image.open(gifs[0]) as gif:
        # tsn_tiny: 4 segments of 32 x 32 crops, enlarged 4x to be seen.
        assert gif.n_frames == 4 and gif.size == (128, 128)
    (strip,) = browse_dataset.main([config, '--out', str(tmp_path), '--num-samples', '1',
                                    '--split', 'val', '--format', 'png'])
    with Image.open(strip) as image:
        # 4 frames in a row, 4 px apart, under a 24 px caption band.
        assert image.size == (4 * 128 + 3 * 4, 24 + 128)
    with pytest.raises(SystemExit, match='no such label map'):
        browse_dataset.main([config, '--out', str(tmp_path), '--label-map', 'missing.txt'])
    # The lists without their videos (a data_prefix that is not where they are): one line.
    lists = tmp_path / 'lists'
    lists.mkdir()
    shutil.copy(data_dir / 'synthetic_train_list_videos.txt', lists)
    with pytest.raises(SystemExit, match=r'\(train\): cannot decode .*videos_train/.*no such file'):
        browse_dataset.main([f'{REPO / "tests" / "configs" / "tsn_tiny.py"}:{lists}',
                             '--out', str(tmp_path)])


def test_tools_take_mains_config_overrides(capsys):
    """The argparse tools apply `--config.KEY=VALUE` as main does (here: a 10-class head,
    2048 x 390 + 390 = 799,110 parameters fewer than K400's 400 classes)."""
    k400 = get_flops.main([str(REPO / 'configs' / 'tsm_k400.py'), '--max-depth', '1'])
    ten = get_flops.main([str(REPO / 'configs' / 'tsm_k400.py'), '--max-depth', '1',
                          '--config.model.cls_head.num_classes=10'])
    assert k400['params'] - ten['params'] == 2048 * 390 + 390
    capsys.readouterr()
    with pytest.raises(SystemExit, match='2'):
        get_flops.main([str(REPO / 'configs' / 'tsm_k400.py'), '--config.model.no_such_key=1'])
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
