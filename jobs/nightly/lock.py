"""One writer per curated root: an advisory lock that the OS releases when the process dies.

A second run on the same tables waits for the lock or fails at once, as configured, instead of
interleaving commits. A killed run leaves no stale lock behind (flock is tied to the process).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from proxylink.jobs.errors import LockHeld, OutputError

LOCK_NAME = "_proxylink.lock"


@contextmanager
def curated_lock(root: Path, wait_seconds: float, holder: str) -> Iterator[None]:
    """Hold the lock of `root` for the block; wait up to `wait_seconds`, then raise LockHeld."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK_NAME, "a+")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise OutputError(f"cannot write under {root}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    other = handle.read().strip() or "another process"
                    raise LockHeld(
                        f"{root} is locked by {other}; waited {wait_seconds:g}s (lock.wait_seconds)"
                    ) from None
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "run": holder}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
