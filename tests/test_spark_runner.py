"""What only the Spark runner does: shuffle by device, retry tasks, check its executors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from proxylink.jobs.config import load_config
from proxylink.jobs.engines import spark_run, spark_tasks
from proxylink.jobs.nightly.run import run_day
from proxylink.jobs.sample import SampleSpec, write_sample
from proxylink.transforms.engine import EngineUnavailable
from tests.helpers import frame, leg, np_row, write_lake

DAY = date(2026, 11, 1)
BIN = Path(sys.executable).parent / "proxylink"
KEY = ["DeviceId", "Timestamp", "ReportId"]


def test_our_murmur3_is_sparks_hash(spark: SparkSession) -> None:
    ints = spark.range(-20_000, 20_000, 7).select(F.col("id").cast("int").alias("k"))
    rows = ints.select("k", F.hash("k").alias("h")).collect()
    assert [spark_run.spark_hash_int(r.k) for r in rows] == [r.h for r in rows]


@pytest.mark.parametrize("n", [1, 2, 3, 8, 61])
def test_each_bucket_key_lands_in_its_own_partition(spark: SparkSession, n: int) -> None:
    keys = spark_run.partition_keys(n)
    frame = spark.createDataFrame([(k,) for k in keys], "key int").repartition(n, "key")
    placed = frame.rdd.mapPartitionsWithIndex(lambda i, rows: [(r.key, i) for r in rows])
    assert sorted(placed.collect()) == sorted(zip(keys, range(n), strict=True))


def test_buckets_are_the_same_on_every_machine() -> None:
    """CRC-32 of the text, not a hash seeded per process or CPU: fixed values."""
    values = pl.Series(["a" * 40, "b" * 40, None, "ünïcode"])
    assert spark_tasks.bucket(values, 7).to_list() == [6, 4, -1, 5]


def _lake(tmp_path: Path) -> Path:
    return write_sample(tmp_path / "lake", SampleSpec(devices=24, start=DAY, days=1, seed=8)).root


def _run(engine: str, events: Path, out: Path, **spark: Any) -> dict[str, Any]:
    proxies = [f"{ip}:{port}" for ip, port in SampleSpec().proxies]
    config = load_config(
        None,
        {
            "engine": engine,
            "events": str(events),
            "curated": str(out),
            "proxies": proxies,
            "spark": {"partitions": 3, **spark},
        },
    )
    report = run_day(config, DAY, force=True)
    assert report.status == "published"
    return dict(json.loads(report.manifest.read_text()))


def _tables(root: Path) -> dict[str, pl.DataFrame]:
    keys = {"connection_success": KEY, "rejects": ["Record"], "domain_daily": ["RemoteUrl"]}
    keys["proxy_coverage"] = ["DeviceId"]
    return {
        name: pl.read_delta(str(root / name)).sort(key, nulls_last=True)
        for name, key in keys.items()
    }


def _files_on_disk(root: Path) -> set[str]:
    return {str(p) for p in root.glob("*/date=*/*.parquet")}


def _committed(root: Path) -> set[str]:
    from deltalake import DeltaTable

    names = ("connection_success", "rejects", "domain_daily", "proxy_coverage")
    return {str(Path(uri)) for n in names for uri in DeltaTable(str(root / n)).file_uris()}


@pytest.mark.parametrize(
    "fault",
    [
        # a build task fails after staging its files; a read and a domain task fail once
        "read:1,build:0,domains:0",
        # the Python worker of a build task dies, as on a lost executor
        "build:2:exit",
    ],
)
def test_failed_tasks_are_retried_without_duplicate_or_lost_rows(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    events = _lake(tmp_path)
    _run("polars", events, tmp_path / "polars")
    want = _tables(tmp_path / "polars")
    monkeypatch.setenv(spark_tasks.FAULT_ENV, fault)
    manifest = _run("spark", events, tmp_path / "spark")
    got = _tables(tmp_path / "spark")
    for name, rows in want.items():
        assert got[name].equals(rows), name
    # Only the files of the attempts that succeeded are in the table folders, and committed.
    assert _files_on_disk(tmp_path / "spark") == _committed(tmp_path / "spark")
    # The failed build attempt had staged its files before it failed: they were removed.
    assert manifest["engine_details"]["orphans_removed"] >= 1
    assert manifest["reconciliation"]["balanced"]


def test_a_task_that_keeps_failing_fails_the_run_and_publishes_nothing(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = write_lake(tmp_path, frame([leg(0, 50001), np_row(10, "a.com", 50001)]))
    config = load_config(
        None,
        {
            "engine": "spark",
            "events": str(events),
            "curated": str(tmp_path / "cur"),
            "proxies": ["10.20.0.5:8080"],
        },
    )
    run_day(config, DAY)
    before = _tables(tmp_path / "cur")
    on_disk = _files_on_disk(tmp_path / "cur")
    # Every attempt of the first build task fails: the run ends without publishing.
    monkeypatch.setenv(spark_tasks.FAULT_ENV, "build:0:always")
    with pytest.raises(RuntimeError, match=r"the Spark job failed: .*build task 0 fails"):
        run_day(config, DAY, force=True)
    after = _tables(tmp_path / "cur")
    assert all(after[n].equals(before[n]) for n in before)
    assert _files_on_disk(tmp_path / "cur") == on_disk, "the failed run's files were removed"


def test_executors_with_other_versions_are_refused_in_one_line(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spark_run, "_CHECKED", set())
    real = spark_tasks.environment()
    monkeypatch.setattr(spark_tasks, "environment", lambda: {**real, "polars": "0.0.1"})
    with pytest.raises(EngineUnavailable) as raised:
        spark_run.check_environment(spark)
    message = str(raised.value)
    assert f"polars {real['polars']} (driver 0.0.1)" in message
    assert "\n" not in message


def test_executors_without_proxylink_are_named_in_one_line(tmp_path: Path) -> None:
    """A run whose executors start a Python without proxylink: exit 2, one line, no stack."""
    events = write_lake(tmp_path, frame([leg(0, 50001), np_row(10, "a.com", 50001)]))
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = subprocess.run(
        [
            *(str(BIN), "run", "--engine", "spark", "--date", str(DAY)),
            *("--events", str(events), "--curated", str(tmp_path / "cur")),
            *("--proxy", "10.20.0.5:8080"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYSPARK_PYTHON": str(bare / "bin" / "python")},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("proxylink: ")]
    assert len(errors) == 1
    assert re.fullmatch(
        r"proxylink: error: the executors' Python cannot import '\w+': it needs proxylink and "
        r"its dependencies; set PYSPARK_PYTHON to such an environment \(see docs/spark\.md\)",
        errors[0],
    ), errors
    assert "Traceback" not in done.stderr and "\tat org.apache" not in done.stderr
    assert not (tmp_path / "cur" / "connection_success").exists()
