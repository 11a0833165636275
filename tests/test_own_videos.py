"""README "Train on your own videos", executed: its bash block, as written, on a generated
tree of 4 classes of real mp4 files, from a checkpoint of an 8-class model.

Only the block's four variables are set here (SRC, CONFIG, CHECKPOINT, VIDEO; CONFIG is the
tiny tests/configs/tsn_tiny_finetune.py), and `python -m action_jax.main` gets extra flags
(1 epoch, no validation); every other line runs as the README says, so the README cannot drift.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

from action_jax.data.synthetic import make_synthetic
from action_jax.models.io import build_recognizer, save_weights

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = REPO / 'tests' / 'configs' / 'tsn_tiny_finetune.py'
sys.path.insert(0, str(TINY.parent))
import tsn_tiny  # noqa: E402
CLASSES = ('square_left', 'square_right', 'disc_left', 'disc_right')
VARIABLES = ('SRC', 'CONFIG', 'CHECKPOINT', 'VIDEO')
MAIN_FLAGS = '--config.train_cfg.max_epochs=1 --config.train_cfg.val_interval=2'


def readme_block() -> str:
    """The first bash block of the README's section "Train on your own videos"."""
    text = (REPO / 'README.md').read_text()
    section = text.split('## Train on your own videos\n', 1)[1].split('\n## ', 1)[0]
    return re.search(r'```bash\n(.*?)```', section, re.DOTALL)[1]


def set_variables(block: str, values: dict[str, str]) -> str:
    """The block with each `NAME=...` line replaced by our value (each must be there)."""
    for name, value in values.items():
        block, count = re.subn(rf'^{name}=.*$', f'{name}={value}', block, flags=re.MULTILINE)
        assert count == 1, f'the README block no longer sets {name}'
    return block


def test_readme_train_on_your_own_videos(tmp_path):
    # The user's folder: 4 classes of 4 videos (from the 8-class synthetic generator).
    generated = tmp_path / 'generated'
    make_synthetic(str(generated), num_videos=32, seed=0, width=48, height=40, frames=16)
    src = tmp_path / 'my_videos'
    for name in CLASSES:
        (src / name).mkdir(parents=True)
        for video in (generated / 'videos_train' / name).glob('*.mp4'):
            shutil.copy(video, src / name)
        for video in (generated / 'videos_val' / name).glob('*.mp4'):
            shutil.copy(video, src / name)
    new_video = next((generated / 'videos_val' / 'disc_left').glob('*.mp4'))
    # The checkpoint to start from: the tiny model for the generator's 8 classes.
    eight = tsn_tiny.get_config(str(generated))
    save_weights(build_recognizer(eight.model, seed=1),
                 str(tmp_path / 'eight' / 'checkpoints' / '0'))

    script = set_variables(readme_block(), dict(
        SRC=src, CONFIG=TINY, CHECKPOINT=tmp_path / 'eight', VIDEO=new_video))
    prelude = ('set -euo pipefail\n'
               'python() {\n'
               '  if [ "${1-} ${2-}" = "-m action_jax.main" ]; then\n'
               f'    "{sys.executable}" "$@" {MAIN_FLAGS}\n'
               f'  else "{sys.executable}" "$@"; fi\n'
               '}\n')
    work = tmp_path / 'work'
    work.mkdir()
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
    proc = subprocess.run(['bash', '-c', prelude + script], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]

    # 1. Lists: 4 classes, one validation video each.
    assert (work / 'data/mine/label_map.txt').read_text().split() == sorted(CLASSES)
    assert len((work / 'data/mine/mine_val_list_videos.txt').read_text().splitlines()) == 4
    # 2. Finetuned from the 8-class checkpoint: its head named in the warning, the rest loaded.
    assert re.search(r'keep their initialisation: .*cls_head/fc_cls/kernel \(128, 8\) vs '
                     r'model \(128, 4\)', log)
    assert (work / 'work_dirs/mine/checkpoints').is_dir()
    # 3. Test metrics, and the per-video scores of the 4 validation videos.
    assert re.search(r'Test metrics: acc/top1 \d\.\d{4}', log)
    scores = json.loads((work / 'work_dirs/mine/test_scores.json').read_text())
    assert len(scores) == 4
    # 4. A prediction: the 4 class names, best first.
    prediction = re.search(r"^\[\('(\w+)', [\d.]+\).*\]$", proc.stdout, re.MULTILINE)
    assert prediction and prediction[1] in CLASSES
    # 5. The ONNX file, verified by the exporter against JAX.
    assert (work / 'work_dirs/mine/model.onnx').is_file()
    assert 'matches JAX' in proc.stdout
