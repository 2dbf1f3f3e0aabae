"""Logging for humans on a terminal and for machines (`--log-format json`), with the run id.

Every record logged during a run carries its run id, which also names the run's manifest, so a
scheduler's log line leads straight to the run's counts and report.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
OUR_LOGGERS = ("jobs", "transforms", "expectations", "proxylink")


@contextmanager
def run_context(run_id: str) -> Iterator[None]:
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


class _RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = _RUN_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "run_id", None)
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        return f"{text}  [run {run}]" if run else text


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted, not when it was set up: a
    caller that swaps stderr (a test harness, an embedding program) never gets a closed one."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def setup(fmt: str, debug: bool) -> None:
    """Our loggers at INFO (DEBUG with --debug), everything else at WARNING, to stderr."""
    handler = _Stderr()
    handler.addFilter(_RunIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)
