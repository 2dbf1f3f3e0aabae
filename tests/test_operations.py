"""Running unattended: default day, lookback, skips, backfills, status, locking, kills, logs."""

from __future__ import annotations

import json
import os
import re
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

from proxylink.jobs.cli import main
from proxylink.jobs.nightly.lock import curated_lock
from tests.helpers import frame, leg, np_row, write_lake

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
    # Without the events or the proxies, whether the input changed is not known, and is not
    # guessed: status reads only the curated root.
    assert main(["status", "--curated", str(root)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2 and all(r.endswith("unknown") for r in rows)


def test_validate_without_proxies_is_a_setting_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    capsys.readouterr()
    reports = sorted((root / "_reports").rglob("*"))
    assert main(["validate", "--date", "2026-11-01", "--curated", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["proxylink: error: no proxies: set `proxies:` in the config or pass --proxy"]
    assert sorted((root / "_reports").rglob("*")) == reports, "nothing was validated"


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
    from proxylink.jobs.sample import SampleSpec, write_sample

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


# --- one snapshot, faults, signals, orphans ---------------------------------------------------

# Runs `proxylink` in a child process with one function of the job replaced: how a test stops a
# run at an exact point (between two commits, in the middle of a build) without timing races.
_CHILD = """
import os, signal, sys
import proxylink.jobs.nightly.publish as publish
import proxylink.jobs.engines.runner as engines
from proxylink.jobs.cli import main
mode = os.environ["STOP_AT"]
if mode == "between-commits":
    real, done = publish.commit_files, []
    def commit_then_die(*args, **kwargs):
        if len(done) == 2:
            os._exit(137)  # as if killed: two tables committed, two not
        done.append(1)
        return real(*args, **kwargs)
    publish.commit_files = commit_then_die
elif mode == "sigterm":
    real_build = engines.PolarsRunner.build
    def build_then_term(self, *args, **kwargs):
        built = real_build(self, *args, **kwargs)  # staged files exist now
        os.kill(os.getpid(), signal.SIGTERM)
        return built
    engines.PolarsRunner.build = build_then_term
sys.exit(main(sys.argv[1:]))
"""


def _child(stop_at: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOP_AT": stop_at}
    return subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def test_a_run_from_python_dash_c_validates_and_publishes(tmp_path: Path) -> None:
    """pyspark's connect package takes a `__main__` without a file for a doctest run and exits
    0 when grpc is missing; great-expectations imports it. A run started from `python -c` (or
    an embedded interpreter, or a pytest-xdist worker) must still validate and publish."""
    events, root = _lake(tmp_path), tmp_path / "cur"
    code = "import sys; from proxylink.jobs.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["run", "--date", "2026-11-01", *_args(events, root)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "published 2026-11-01" in done.stdout
    assert "Skipping doctests" not in done.stderr
    assert DeltaTable(str(root / "connection_success")).version() == 0


TABLES = ("connection_success", "rejects", "domain_daily", "proxy_coverage")


def _read_all(root: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table as `proxylink sql` shows it, rows sorted."""
    from proxylink.jobs.serving.query import run_query

    got = {}
    for name in TABLES:
        out = root.parent / f"{name}.parquet"
        run_query(root, f"SELECT * FROM {name}", "parquet", out)
        got[name] = sorted(pl.read_parquet(out).rows(), key=repr)
    return got


def test_a_run_killed_between_its_commits_leaves_readers_on_one_snapshot(tmp_path: Path) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    before = _read_all(root)
    pins = json.loads((root / "_snapshot.json").read_text())["tables"]
    late = events / "date=2026-11-01" / "hour=12" / "part-late.parquet"
    frame([leg(5000, 50099), np_row(5010, "late.example.com", 50099)]).write_parquet(late)

    done = _child("between-commits", "run", "--date", "2026-11-01", *_args(events, root))
    assert done.returncode == 137
    versions = {t: DeltaTable(str(root / t)).version() for t in TABLES}
    assert versions == {t: pins[t] + (1 if t in TABLES[:2] else 0) for t in TABLES}
    # Two tables are a version ahead, but every reader still sees the last complete publish.
    assert _read_all(root) == before
    assert main(["report", "--curated", str(root), "--date", "2026-11-01"]) == 0
    assert main(["validate", "--curated", str(root), "--date", "2026-11-01",
                 "--proxy", "10.20.0.5:8080"]) == 0  # fmt: skip
    # The next complete run moves every reader to its own publish at once.
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    after = _read_all(root)
    urls = [r for r in after["domain_daily"] if "late.example.com" in r]
    assert urls and len(after["connection_success"]) == len(before["connection_success"]) + 1


def test_a_full_disk_leaves_every_table_readable_and_unchanged(tmp_path: Path) -> None:
    import resource

    from proxylink.jobs.sample import SampleSpec, write_sample

    lake = write_sample(tmp_path / "lake", SampleSpec(devices=40, seed=5))
    root = tmp_path / "cur"
    conf = Path(__file__).parent.parent / "conf" / "local.yaml"
    base = [str(BIN), "run", "--date", "2026-11-01", "--conf", str(conf), "--events",
            str(lake.root), "--curated", str(root)]  # fmt: skip
    assert subprocess.run(base, capture_output=True).returncode == 0
    before = _read_all(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and "_manifests" not in p.parts)

    def small_files() -> None:  # as a full disk: no file of the run may grow past 64 KB
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    done = subprocess.run([*base, "--force"], capture_output=True, text=True,
                          preexec_fn=small_files, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("proxylink: ")]
    assert re.match(rf"proxylink: error: 2026-11-01: cannot write {root}/\S+: ", line), line
    assert "Traceback" not in done.stderr
    assert _read_all(root) == before
    left = sorted(p for p in root.rglob("*") if p.is_file() and "_manifests" not in p.parts)
    assert left == files, "the failed run left no staged file behind"


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    before = _read_all(root)
    files = sorted(p for p in root.rglob("*.parquet"))
    done = _child("sigterm", "run", "--date", "2026-11-01", "--force", *_args(events, root))
    assert done.returncode == 143
    assert done.stderr.splitlines()[-1] == "proxylink: interrupted"
    assert "Traceback" not in done.stderr
    assert _read_all(root) == before
    assert sorted(p for p in root.rglob("*.parquet")) == files  # its staged files are removed
    assert main(["run", "--date", "2026-11-01", "--force", *_args(events, root)]) == 0  # lock


def test_maintain_removes_orphaned_files_older_than_the_retention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    folder = root / "connection_success" / "date=2026-11-01"
    live = sorted(folder.iterdir())
    old, fresh = folder / "part-killed-old.parquet", folder / "part-killed-fresh.parquet"
    for orphan in (old, fresh):  # what a run killed after staging leaves
        orphan.write_bytes(live[0].read_bytes())
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    rows = pl.read_delta(str(root / "connection_success"))
    conf = tmp_path / "m.yaml"
    conf.write_text("maintenance:\n  retention_hours: 168\n")
    capsys.readouterr()
    assert main(["maintain", "--conf", str(conf), "--curated", str(root), "--dry-run"]) == 0
    assert old.exists()
    assert main(["maintain", "--conf", str(conf), "--curated", str(root)]) == 0
    assert "connection_success: compacted 0 files into 0, vacuumed 0 files and 1 orphaned" in (
        capsys.readouterr().out
    )
    assert not old.exists() and fresh.exists()  # younger than the retention: maybe in flight
    assert sorted(p for p in folder.iterdir() if p != fresh) == live
    assert pl.read_delta(str(root / "connection_success")).equals(rows)


def test_report_out_an_existing_folder_writes_into_it(tmp_path: Path) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    out = tmp_path / "reports"
    out.mkdir()
    assert main(["report", "--curated", str(root), "--date", "2026-11-01", "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["2026-11-01.html"]
    assert not (tmp_path / "reports.tmp").exists()


def test_a_proxy_range_wider_than_a_slash_8_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, root = _lake(tmp_path), tmp_path / "cur"
    args = ["--events", str(events), "--curated", str(root), "--proxy", "0.0.0.0/0"]
    assert main(["run", "--date", "2026-11-01", *args]) == 0
    err = capsys.readouterr().err
    assert "proxy range 0.0.0.0/0 (defaults + command line) covers 4,294,967,296 addresses" in err
    assert main(["run", "--date", "2026-11-01", "--force", *_args(events, root)]) == 0
    assert "wider than a /8" not in capsys.readouterr().err  # a /32 is not warned about


def test_readers_follow_commits_that_change_no_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxylink.jobs.serving.tables import snapshot_version

    events, root = _lake(tmp_path), tmp_path / "cur"
    assert main(["run", "--date", "2026-11-01", *_args(events, root)]) == 0
    table = DeltaTable(str(root / "connection_success"))
    table.alter.set_column_metadata("RemoteUrl", {"comment": "set by a metastore"})
    assert DeltaTable(str(root / "connection_success")).version() == 1
    assert snapshot_version(root, "connection_success") is None  # the current version is read
    capsys.readouterr()
    assert main(["sql", "--curated", str(root), "SELECT count(*) FROM connection_success"]) == 0
    assert "did not finish" not in capsys.readouterr().err
