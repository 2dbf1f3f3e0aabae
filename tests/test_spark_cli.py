"""`proxylink run --engine spark` end to end: the same published rows as the polars engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl

from jobs.sample import SampleSpec, write_sample

BIN = Path(sys.executable).parent / "proxylink"
CONF = Path(__file__).parent.parent / "conf"


def test_spark_run_publishes_the_same_table_as_polars(tmp_path: Path) -> None:
    lake = write_sample(tmp_path / "lake", SampleSpec(devices=40, seed=5))
    tables = {}
    for engine in ("polars", "spark"):
        curated = tmp_path / engine
        done = subprocess.run(
            [
                *(str(BIN), "run", "--conf", str(CONF / "spark.yaml"), "--engine", engine),
                *("--date", "2026-11-01", "--events", str(lake.root), "--curated", str(curated)),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "validation: passed" in done.stdout
        key = ["DeviceId", "Timestamp", "ReportId"]
        tables[engine] = pl.read_delta(str(curated / "connection_success")).sort(key)
    assert tables["spark"].height > 1000
    assert tables["spark"].equals(tables["polars"])
