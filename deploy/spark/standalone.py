"""A throwaway Spark standalone cluster on 127.0.0.1: a master and N workers, from pyspark's own
`bin/spark-class`, for trying `deploy/spark/spark-submit.sh` on one machine.

    .venv/bin/python deploy/spark/standalone.py --workers 2   # prints the master URL; ^C stops

The test suite (`tests/test_spark_cli.py`) and `make bench --cluster` use `standalone()`.
Every process it starts runs in a process group of its own, and is stopped on exit: the
executors a worker launches are in that worker's group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cluster:
    """A running cluster: its master URL and the pids of its master and workers (each the
    head of a process group that holds the executors it launches)."""

    master: str
    pids: list[int] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive_workers(ui: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as page:
            return int(json.load(page).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


@contextmanager
def standalone(
    workdir: Path, workers: int = 2, cores: int = 1, memory: str = "1536m", timeout: float = 120
) -> Iterator[Cluster]:
    """Start the cluster, yield it (master URL `spark://127.0.0.1:PORT`), stop it.

    Logs go to `workdir/<process>.log`. Raises RuntimeError if it is not up within `timeout`
    seconds, naming the log to read."""
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port, ui = _free_port(), _free_port()
    master = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, *args: str) -> None:
        with (workdir / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                [str(spark_class), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        procs.append((name, proc))

    def wait(what: str, ready: object) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            for name, proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited before {what}; see {workdir}/{name}.log")
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}; see the logs in {workdir}")

    try:
        start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)),
        )
        wait("the master", lambda: _listening(port))
        for i in range(1, workers + 1):
            start(
                f"worker{i}",
                "org.apache.spark.deploy.worker.Worker",
                *("--host", "127.0.0.1", "--cores", str(cores), "--memory", memory),
                *("--webui-port", str(_free_port()), "--work-dir", str(workdir / f"work{i}")),
                master,
            )
        wait(f"{workers} workers", lambda: _alive_workers(ui) == workers)
        yield Cluster(master, [proc.pid for _, proc in procs])
    finally:
        for _, proc in procs:
            _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--memory", default="1536m")
    args = parser.parse_args()
    with standalone(Path(tempfile.mkdtemp(prefix="spark-standalone-")), args.workers,
                    args.cores, args.memory) as cluster:  # fmt: skip
        print(cluster.master, flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
