"""Running unattended: default day, lookback, skips, backfills, status, locking, kills, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from helpers import frame, leg, np_row, write_lake

from jobs.cli import main
from jobs.lock import curated_lock

DAY_MS = 24 * 3600 * 1000
BIN = Path(sys.executable).parent / "proxylink"


def _lake(tmp_path: Path, days: int = 3) -> Path:
    rows = []
    for d in range(days):
        rows += [leg(d * DAY_MS, 50001 + d), np_row(d * DAY_MS + 10, f"d{d}.com", 50001 + d)]
    return write_lake(tmp_path, frame(rows))


def _args(events: Path, root: Path, *extra: str) -> list[str]:
    return ["--events", str(events), "--curated", str(root), "--proxy", "10.20.0.5:8080", *extra]


def test_second_run_skips_unchanged_input_and_force_rebuilds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    out = capsys.readouterr().out
    assert "skipped 2026-11-01: input unchanged since run" in out
    table = DeltaTable(str(root / "connection_success"))
    assert table.version() == 0
    # A late file changes the input: the next run rebuilds.
    late = events / "date=2026-11-01" / "hour=12" / "part-late.parquet"
    frame([leg(5000, 50099)]).write_parquet(late)
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    assert "published 2026-11-01" in capsys.readouterr().out
    assert main(["run", "--date", "2026-11-01", "--force", *_args(events, root)]) == 0
    assert DeltaTable(str(root / "connection_success")).version() == 2


def test_lookback_rebuilds_the_days_before(tmp_path: Path) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-03", "--lookback", "2", *_args(events, root)]) == 0
    dates = pl.read_delta(str(root / "connection_success"))["date"].unique().sort().to_list()
    assert dates == [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]


def test_run_without_date_builds_yesterday_utc(tmp_path: Path) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    shift = (datetime.combine(yesterday, t0.timetz()) - t0).total_seconds() * 1000
    events = write_lake(tmp_path, frame([leg(shift, 50001)]))
    assert main(["run", *_args(events, tmp_path / "cur")]) == 0
    published = pl.read_delta(str(tmp_path / "cur" / "connection_success"))["date"].to_list()
    assert published == [yesterday]


def test_backfill_runs_every_day_reports_failures_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, root = _lake(tmp_path, days=3), tmp_path / "cur"
    cmd = ["backfill", "--from", "2026-11-01", "--to", "2026-11-04", *_args(events, root)]
    assert main(cmd) == 3, "2026-11-04 has no partitions"
    captured = capsys.readouterr()
    assert "[##############################] 4/4" in captured.err
    table = {line.split()[0]: line for line in captured.out.splitlines() if line[:4] == "2026"}
    assert "published" in table["2026-11-01"] and "published" in table["2026-11-03"]
    assert "failed input" in table["2026-11-04"] and "no partitions" in table["2026-11-04"]
    assert "4 days: 3 ok, 1 failed" in captured.out
    # Resume: published days are skipped, the missing day still fails.
    assert main(cmd) == 3
    out = capsys.readouterr().out
    assert out.count("skipped") == 3


def test_status_shows_days_and_input_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, root = _lake(tmp_path, days=2), tmp_path / "cur"
    main(["backfill", "--from", "2026-11-01", "--to", "2026-11-02", *_args(events, root)])
    frame([leg(100, 50077)]).write_parquet(events / "date=2026-11-01" / "hour=12" / "late.parquet")
    capsys.readouterr()
    assert main(["status", *_args(events, root)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["2026-11-01"].split()[1] == "published"
    assert lines["2026-11-01"].endswith("yes") and lines["2026-11-02"].endswith("no")


def test_a_held_lock_fails_with_exit_4_or_waits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    with curated_lock(root, 0, "other-run"):
        code = main(["run", "--date", "2026-11-01", *_args(events, root)])
    assert code == 4
    err = capsys.readouterr().err
    assert "locked by" in err and "other-run" in err and "lock.wait_seconds" in err
    conf = tmp_path / "wait.yaml"
    conf.write_text("lock:\n  wait_seconds: 30\n")
    release = threading.Event()

    def hold() -> None:
        with curated_lock(root, 0, "other-run"):
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    threading.Timer(1.0, release.set).start()
    code = main(["run", "--date", "2026-11-01", "--conf", str(conf), *_args(events, root)])
    holder.join()
    assert code == 0, "the second run waited for the first"


def test_a_run_killed_mid_write_leaves_the_published_table_intact(tmp_path: Path) -> None:
    from jobs.sample import SampleSpec, write_sample

    lake = write_sample(tmp_path / "lake", SampleSpec(devices=150, seed=3))
    root = tmp_path / "cur"
    conf = Path(__file__).parent.parent / "conf" / "local.yaml"
    base = ["run", "--date", "2026-11-01", "--conf", str(conf), "--events", str(lake.root)]
    base += ["--curated", str(root)]
    assert subprocess.run([str(BIN), *base], capture_output=True).returncode == 0
    table = root / "connection_success"
    before = pl.read_delta(str(table))
    version = DeltaTable(str(table)).version()
    files = set((table / "date=2026-11-01").iterdir())

    proc = subprocess.Popen([str(BIN), *base, "--force"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # progress lines name each step as it starts
        if "write" in line:
            break
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once its new data file exists
        if set((table / "date=2026-11-01").iterdir()) - files:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert proc.returncode == -signal.SIGKILL
    assert DeltaTable(str(table)).version() == version
    assert pl.read_delta(str(table)).equals(before)
    # The lock died with the process: the next run goes through.
    assert subprocess.run([str(BIN), *base, "--force"], capture_output=True).returncode == 0


def test_maintain_compacts_and_vacuums(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    for _ in range(3):
        main(["run", "--date", "2026-11-01", "--force", *_args(events, root)])
    main(["run", "--date", "2026-11-02", *_args(events, root)])
    rows = pl.read_delta(str(root / "connection_success")).sort("Timestamp")
    conf = tmp_path / "m.yaml"
    conf.write_text("maintenance:\n  retention_hours: 0\n")
    capsys.readouterr()
    assert main(["maintain", "--conf", str(conf), "--curated", str(root)]) == 0
    out = capsys.readouterr().out
    assert "connection_success: compacted" in out
    table = root / "connection_success"
    assert pl.read_delta(str(table)).sort("Timestamp").equals(rows)
    on_disk = list(table.rglob("*.parquet"))
    assert len(on_disk) == len(DeltaTable(str(table)).file_uris()), "no stale files remain"


def test_json_logs_carry_the_run_id(tmp_path: Path) -> None:
    events = _lake(tmp_path)
    done = subprocess.run(
        [
            str(BIN),
            "--log-format",
            "json",
            "run",
            "--date",
            "2026-11-01",
            *_args(events, tmp_path / "cur"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    run_ids = {r["run_id"] for r in records if r["run_id"]}
    assert len(run_ids) == 1
    (manifest,) = (tmp_path / "cur" / "_manifests").rglob("*.json")
    assert manifest.stem in run_ids


def test_unwritable_curated_root_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _lake(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code = main(["run", "--date", "2026-11-01", *_args(events, blocker / "cur")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot write under {blocker / 'cur'}" in err and "Traceback" not in err


def test_clock_skew_within_the_margin_is_counted(tmp_path: Path) -> None:
    """A row stored in the next hour's partition, 2 minutes late: linked, and counted."""
    events = _lake(tmp_path, days=1)
    skewed = frame([leg(3_600_000 + 120_000, 50005)]).with_columns(
        pl.col("Timestamp") - timedelta(minutes=4)
    )
    folder = events / "date=2026-11-01" / "hour=13"
    folder.mkdir(parents=True, exist_ok=True)
    skewed.write_parquet(folder / "part-skew.parquet")
    assert main(["run", "--date", "2026-11-01", *_args(events, tmp_path / "cur")]) == 0
    (manifest,) = (tmp_path / "cur" / "_manifests").rglob("*.json")
    m = json.loads(manifest.read_text())
    assert m["counts"]["skewed_rows"] == 1
    assert m["counts"]["rejected"] == 0
