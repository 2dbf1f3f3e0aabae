"""Step timing for runs: each step's duration goes to the manifest, its name to the progress
callback the CLI shows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Timer:
    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.durations: dict[str, float] = {}
        self._progress = progress

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self._progress is not None:
            self._progress(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.durations[name] = round(time.perf_counter() - t0, 3)
