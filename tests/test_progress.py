"""action_jax.progress: a bar with count and ETA on a terminal, nothing elsewhere."""
import sys
import types

from action_jax import progress


def test_quiet_when_not_a_terminal(capsys):
    assert list(progress.track(range(5), 'Counting')) == list(range(5))
    assert capsys.readouterr() == ('', '')


def test_bar_shows_count_and_eta(capsys, monkeypatch):
    monkeypatch.setattr(progress, 'enabled', lambda: True)
    items = iter('abc')  # no len(): the total comes from the argument
    assert list(progress.track(items, 'Counting', total=3)) == ['a', 'b', 'c']
    err = capsys.readouterr().err
    assert 'Counting' in err and '3/3' in err and 'ETA' in err


def test_only_process_zero_draws(monkeypatch):
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True)
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    for index, drawn in ((0, True), (1, False)):
        monkeypatch.setitem(sys.modules, 'jax', types.SimpleNamespace(process_index=lambda: index))
        assert progress.enabled() is drawn
