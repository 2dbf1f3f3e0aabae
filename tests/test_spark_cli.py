"""`proxylink run --engine spark` end to end: the same published rows as the polars engine."""

from __future__ import annotations

import os
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
        shown = [ln for ln in done.stderr.splitlines() if " INFO " not in ln and " WARN " not in ln]
        assert done.returncode == 0, "\n".join(shown[-30:])
        assert "validation: passed" in done.stdout
        key = ["DeviceId", "Timestamp", "ReportId"]
        tables[engine] = pl.read_delta(str(curated / "connection_success")).sort(key)
    assert tables["spark"].height > 1000
    assert tables["spark"].equals(tables["polars"])


def test_spark_submit_entry_point_runs_the_job(tmp_path: Path) -> None:
    """The deploy script's command, on a local master instead of a cluster."""
    lake = write_sample(tmp_path / "lake", SampleSpec(devices=40, seed=5))
    conf = tmp_path / "cluster.yaml"
    conf.write_text(
        (CONF / "spark-cluster.yaml")
        .read_text()
        .replace("/lake/defender/DeviceNetworkEvents", str(lake.root))
        .replace("/lake/curated", str(tmp_path / "curated"))
        .replace("/tmp/proxylink-checkpoints", str(tmp_path / "ckpt"))
        .replace('"400"', '"4"')
    )
    script = (Path(__file__).parent.parent / "deploy" / "spark" / "spark-submit.sh").read_text()
    assert "jobs/spark_entry.py" in script and "--deploy-mode client" in script
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    entry = Path(__file__).parent.parent / "jobs" / "spark_entry.py"
    done = subprocess.run(
        [
            str(BIN.parent / "spark-submit"),
            *("--master", "local[2]", str(entry), "run", "--conf", str(conf)),
            *("--date", "2026-11-01"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        # As the deploy script does: spark-submit finds pyspark through the venv's python.
        env={**os.environ, "PATH": f"{BIN.parent}:{os.environ.get('PATH', '')}"},
    )
    shown = [ln for ln in done.stderr.splitlines() if " INFO " not in ln and " WARN " not in ln]
    assert done.returncode == 0, "\n".join(shown[-30:])
    rows = pl.read_delta(str(tmp_path / "curated" / "connection_success"))
    assert rows.height > 100
