"""The Spark engine as users start it: `proxylink run --engine spark` on this machine, and
`deploy/spark/spark-submit.sh` against a real standalone cluster (a master and two workers on
127.0.0.1, started from pyspark's own `bin/spark-class`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from proxylink.jobs.config import load_config
from proxylink.jobs.nightly.run import run_day
from proxylink.jobs.sample import SampleSpec, write_sample

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
CONF = ROOT / "conf"
DAY = date(2026, 11, 1)
KEY = ["DeviceId", "Timestamp", "ReportId"]
TABLES = {
    "connection_success": KEY,
    "rejects": ["Record"],
    "domain_daily": ["RemoteUrl"],
    "proxy_coverage": ["DeviceId"],
}


def _published(root: Path) -> dict[str, pl.DataFrame]:
    return {
        name: pl.read_delta(str(root / name)).sort(key, nulls_last=True)
        for name, key in TABLES.items()
    }


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pl.DataFrame]]:
    """A sample lake and what the polars engine publishes from it."""
    root = tmp_path_factory.mktemp("lake")
    events = write_sample(root / "lake", SampleSpec(devices=40, start=DAY, seed=5)).root
    config = load_config(CONF / "local.yaml", {"events": str(events), "curated": str(root / "p")})
    assert run_day(config, DAY).status == "published"
    return events, _published(root / "p")


def _spark_noise(stderr: str) -> list[str]:
    """Lines of stderr that neither proxylink nor the JVM's one start-up notice wrote."""
    ours = ("proxylink", "  …", "WARNING: Using incubator modules")
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(ours)]


def test_run_with_the_spark_engine_publishes_what_polars_publishes(
    lake: tuple[Path, dict[str, pl.DataFrame]], tmp_path: Path
) -> None:
    events, want = lake
    done = subprocess.run(
        [
            *(str(BIN / "proxylink"), "run", "--conf", str(CONF / "spark.yaml")),
            *("--date", str(DAY), "--events", str(events), "--curated", str(tmp_path / "s")),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation: passed" in done.stdout
    # Spark's console logging is quiet: proxylink's progress and log lines only.
    noise = [ln for ln in _spark_noise(done.stderr) if " info " not in ln]
    assert noise == [], noise
    got = _published(tmp_path / "s")
    for name, rows in want.items():
        assert got[name].equals(rows), name


def _standalone() -> Any:
    """deploy/spark/standalone.py, the cluster launcher users run too (not a package)."""
    path = ROOT / "deploy" / "spark" / "standalone.py"
    spec = importlib.util.spec_from_file_location("standalone", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    """A standalone master and two one-core workers on 127.0.0.1, stopped afterwards."""
    with _standalone().standalone(tmp_path / "cluster", workers=2, cores=1) as running:
        yield running.master


def test_spark_submit_on_a_standalone_cluster_publishes_what_polars_publishes(
    lake: tuple[Path, dict[str, pl.DataFrame]], cluster: str, tmp_path: Path
) -> None:
    """The deploy script, unchanged, against a real master with two workers: the executors are
    separate JVMs with their own Python workers, so the whole distributed path runs."""
    events, want = lake
    conf = tmp_path / "cluster.yaml"
    conf.write_text(
        (CONF / "spark-cluster.yaml")
        .read_text()
        .replace("/lake/defender/DeviceNetworkEvents", str(events))
        .replace("/lake/curated", str(tmp_path / "curated"))
    )
    env = {
        **os.environ,
        "PROXYLINK_HOME": str(ROOT),
        "PROXYLINK_CONF": str(conf),
        "SPARK_MASTER": cluster,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "EXECUTOR_MEMORY": "512m",
        "EXECUTOR_CORES": "1",
        "EXECUTOR_MEMORY_OVERHEAD": "512m",
        "EXECUTOR_PYTHON": sys.executable,
    }
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "deploy" / "spark" / "spark-submit.sh"),
            "--date",
            str(DAY),
            "--lookback",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"published {DAY}" in done.stdout, done.stdout[-2000:]
    got = _published(tmp_path / "curated")
    for name, rows in want.items():
        assert got[name].filter(pl.col("date") == DAY).equals(rows), name
    manifest = json.loads(next((tmp_path / "curated" / "_manifests").rglob("*.json")).read_text())
    hosts = manifest["engine_details"]
    assert manifest["engine"] == "spark" and hosts["partitions"] == 2, hosts
