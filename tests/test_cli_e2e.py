"""The CLI end to end, as a user runs it: the console script, a sample lake, a Delta table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

BIN = Path(sys.executable).parent / "proxylink"
DAY = "2026-11-01"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    done = cli("sample", "--out", str(root / "lake"), "--devices", "30", "--days", "2")
    assert done.returncode == 0, done.stderr
    assert "sample lake:" in done.stdout
    return root


def test_sample_writes_a_hive_partitioned_lake_with_truth(lake: Path) -> None:
    events = lake / "lake" / "DeviceNetworkEvents"
    assert (events / f"date={DAY}" / "hour=12").is_dir()
    assert (lake / "lake" / "truth" / "connections.parquet").is_file()


def test_run_publishes_and_reruns_identically(lake: Path) -> None:
    conf = Path(__file__).parent.parent / "conf" / "local.yaml"
    args = [
        "run",
        "--date",
        DAY,
        "--conf",
        str(conf),
        "--events",
        str(lake / "lake" / "DeviceNetworkEvents"),
        "--curated",
        str(lake / "curated"),
        "--force",
    ]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert f"published {DAY}" in first.stdout
    for label in ("linked by socket", "linked by process", "evidence only", "unlinked", "rejected"):
        assert label in first.stdout
    table = lake / "curated" / "connection_success"
    rows1 = pl.read_delta(str(table)).sort("DeviceId", "Timestamp", "ReportId")

    second = cli(*args)
    assert second.returncode == 0, second.stderr
    rows2 = pl.read_delta(str(table)).sort("DeviceId", "Timestamp", "ReportId")
    assert rows1.equals(rows2)

    manifests = sorted((lake / "curated" / "_manifests" / f"date={DAY}").glob("*.json"))
    assert len(manifests) == 2
    m = json.loads(manifests[-1].read_text())
    assert m["status"] == "published"
    assert m["reconciliation"]["balanced"]
    assert m["counts"]["curated"] == rows2.height
    assert m["tables"]["connection_success"]["version"] == 1
    assert {"plan", "link", "write", "publish"} <= set(m["durations_s"])
    assert m["versions"]["polars"] == pl.__version__


def test_usage_error_is_one_line_with_exit_2(lake: Path) -> None:
    done = cli("run", "--date", "tomorrow")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "expected YYYY-MM-DD" in done.stderr


@pytest.mark.parametrize("devices", [1, 4, 12, 20, 45])
def test_a_sample_of_any_size_publishes_with_the_default_expectations(
    tmp_path: Path, devices: int
) -> None:
    """A newcomer's first `sample` then `run` publishes, whatever size they asked for: the
    generator's deliberately broken rows never push one file past the input suite's rates."""
    from proxylink.jobs.config import load_config
    from proxylink.jobs.nightly.run import run_day
    from proxylink.jobs.sample import SampleSpec, write_sample

    spec = SampleSpec(devices=devices, days=1, seed=devices)
    lake = write_sample(tmp_path / "lake", spec)
    conf = Path(__file__).parent.parent / "conf" / "local.yaml"
    overrides = {"events": str(lake.root), "curated": str(tmp_path / "curated")}
    report = run_day(load_config(conf, overrides), spec.start)
    assert report.status == "published", report.validation
    assert report.validation is not None and not report.validation.warnings
    if devices >= 20:  # lakes this big carry every kind of broken row
        rejects = pl.read_delta(str(tmp_path / "curated" / "rejects"))
        reasons = set(rejects["RejectReason"])
        assert {"null_DeviceId", "bad_AdditionalFields"} <= reasons
