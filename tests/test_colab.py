"""colabs/inference.ipynb runs end to end (its quick mode, on the CPU) with nbclient."""
import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / 'colabs' / 'inference.ipynb'


def outputs_of(cell) -> str:
    return ''.join(o.get('text', '') + str(o.get('data', {}).get('text/plain', ''))
                   for o in cell.get('outputs', []))


def test_notebook_runs(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this environment: quick mode, files under tmp_path, CPU only.
    monkeypatch.setenv('ACTION_JAX_NOTEBOOK_QUICK', '1')
    monkeypatch.setenv('ACTION_JAX_NOTEBOOK_DIR', str(tmp_path / 'work'))
    monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
    NotebookClient(notebook, timeout=300, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()

    code = [c for c in notebook.cells if c.cell_type == 'code']
    printed = '\n'.join(outputs_of(c) for c in code)
    assert 'test metrics:' in printed and 'acc/top1' in printed
    top5 = printed.split('top-5:')[1].strip().splitlines()[:5]
    assert len(top5) == 5
    scores = [float(line.split()[-1]) for line in top5]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    # The last cell shows the frame strip (an image, with or without matplotlib).
    assert any('image/png' in o.get('data', {}) for o in code[-1].outputs)
    assert (tmp_path / 'work' / 'tsn_workdir' / 'checkpoints').is_dir()
