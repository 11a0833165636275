"""Progress bars for long loops: ``for item in track(items, 'Decoding'): ...``.

A bar shows the description, done/total, elapsed time and the ETA (rich.progress, on stderr so
that it never mixes with results on stdout). It is drawn only when stdout and stderr are both a
terminal and only on JAX process 0, so redirected output, CI logs and the other hosts of a
multi-host job stay quiet.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar('T')


def _process_index() -> int:
    # Only where JAX is already in use: importing it here would slow every tool's start-up.
    jax = sys.modules.get('jax')
    return jax.process_index() if jax is not None else 0


def enabled() -> bool:
    """Whether bars are drawn: stdout and stderr are a terminal and this is process 0."""
    return sys.stdout.isatty() and sys.stderr.isatty() and _process_index() == 0


@contextlib.contextmanager
def bar(description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
    """A bar advanced by hand, for work that reports through callbacks:
    ``with bar('Packing', total=n) as advance: ... advance()``."""
    if not enabled():
        yield lambda: None
        return
    progress = Progress(TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn('ETA'), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False)
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield the items of ``iterable`` while showing a bar (when :func:`enabled`).

    ``total`` defaults to ``len(iterable)``; without either the bar shows the count only.
    """
    if total is None and hasattr(iterable, '__len__'):
        total = len(iterable)
    with bar(description, total) as advance:
        for item in iterable:
            yield item
            advance()
