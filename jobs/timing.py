"""Step timing for runs: each step's duration goes to the manifest, its name to the progress
callback the CLI shows. Inner steps of a build (`detail`) go to the manifest and the debug log
only."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Timer:
    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.durations: dict[str, float] = {}
        # "step.inner" -> seconds: where a step's time went (the build's classify, link, ...).
        self.details: dict[str, float] = {}
        self._progress = progress
        self._current = ""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self._progress is not None:
            self._progress(name)
        t0 = time.perf_counter()
        outer, self._current = self._current, name
        try:
            yield
        finally:
            self._current = outer
            self.durations[name] = round(time.perf_counter() - t0, 3)
            log.debug("step %s: %.3fs", name, self.durations[name])

    @contextmanager
    def detail(self, name: str) -> Iterator[None]:
        """Time an inner step of the current step (repeats add up, e.g. across retries)."""
        key = f"{self._current}.{name}" if self._current else name
        t0 = time.perf_counter()
        try:
            yield
        finally:
            secs = time.perf_counter() - t0
            self.details[key] = round(self.details.get(key, 0.0) + secs, 3)
            log.debug("step %s: %.3fs", key, secs)
