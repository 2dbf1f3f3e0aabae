"""Benchmark `proxylink run` against a hand-written DuckDB baseline on a day of ~7M events.

Each run is a separate child process, so its wall time and peak RSS (from `os.wait4`) are its
whole cost: interpreter start, planning, reading, linking and writing (for proxylink also the
Delta commit and the manifest). The contenders alternate so that a warm page cache or a busy
neighbour favours neither.

    .venv/bin/python bench/run_bench.py [--devices 4000] [--connections-per-device N]
                                        [--repeats 3] [--keep]

Results go to stdout and to bench/.data/last-bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from jobs.plan import plan_files
from jobs.sample import SampleSpec, write_sample
from transforms.params import DayWindow, LinkParams, parse_proxy

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / ".data"
DAY = date(2026, 11, 1)
PROXIES = ("10.20.0.5:8080", "10.20.0.6:3128")
# The generator writes ~2.93 rows per connection, so 600 connections per device per day give
# about 7.0M events for 4,000 devices.
DEFAULT_CPD = 600
LAKE_DONE = ".complete"
CONTENDERS = ("proxylink", "duckdb")
METHODS = ("socket", "process", "unlinked", "evidence_only", "direct")


@dataclass
class Run:
    """One child process: what it cost and what it produced."""

    contender: str
    repeat: int
    wall_s: float
    peak_rss_mb: float
    exit_code: int
    rows: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)


class ContenderFailed(Exception):
    """A child exited non-zero; the message carries its stderr tail."""


def ensure_lake(devices: int, cpd: int, seed: int) -> Path:
    """The bench lake, generated once and reused; a half-written lake is generated again."""
    lake = DATA / f"lake-{devices}-{cpd}-{seed}"
    if (lake / LAKE_DONE).exists():
        print(f"lake: reusing {lake}")
        return lake
    print(f"lake: generating {lake} ({devices:,} devices, {cpd} connections per device)")
    t0 = time.perf_counter()
    spec = SampleSpec(devices=devices, connections_per_device=cpd, start=DAY, days=1, seed=seed)
    summary = write_sample(lake, spec, progress=lambda msg: print(f"  … {msg}", flush=True))
    (lake / LAKE_DONE).write_text(json.dumps({"events": summary.events, "files": summary.files}))
    print(
        f"lake: {summary.events:,} rows in {summary.files} files, {time.perf_counter() - t0:.0f}s"
    )
    return lake


def parquet_rows(paths: Sequence[Path]) -> int:
    """Row count from the Parquet footers, without reading any data."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def measure(cmd: list[str], workdir: Path) -> tuple[float, float, int]:
    """Run `cmd` as a child; return (wall s, peak RSS MB, exit code).

    `os.wait4` gives the child's own resource usage; ru_maxrss is in KiB on Linux.
    """
    with (workdir / "stdout.txt").open("wb") as out, (workdir / "stderr.txt").open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # already reaped: keep Popen from waiting again
    return wall, usage.ru_maxrss / 1024, code


def stderr_tail(workdir: Path, lines: int = 25) -> str:
    text = (workdir / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def run_proxylink(lake: Path, workdir: Path, repeat: int) -> Run:
    """`proxylink run` for the day into a fresh curated root; counts from its manifest."""
    curated = workdir / "curated"
    cmd = [str(Path(sys.executable).parent / "proxylink"), "run", "--date", DAY.isoformat()]
    cmd += ["--events", str(lake / "DeviceNetworkEvents"), "--curated", str(curated)]
    for proxy in PROXIES:
        cmd += ["--proxy", proxy]
    wall, rss, code = measure(cmd, workdir)
    run = Run("proxylink", repeat, round(wall, 3), round(rss, 1), code)
    if code != 0:
        raise ContenderFailed(f"proxylink exited {code}:\n{stderr_tail(workdir)}")
    manifests = sorted((curated / "_manifests" / f"date={DAY.isoformat()}").glob("*.json"))
    if not manifests:
        raise ContenderFailed(f"proxylink wrote no manifest under {curated / '_manifests'}")
    manifest = json.loads(manifests[-1].read_text(encoding="utf-8"))
    counts = manifest["counts"]
    run.rows = counts["curated"]
    run.methods = {m: counts.get(f"method_{m}", 0) for m in METHODS}
    run.durations_s = manifest["durations_s"]
    return run


def run_duckdb(lake: Path, workdir: Path, repeat: int) -> Run:
    """The DuckDB baseline in its own interpreter; counts read back from its Parquet output."""
    out = workdir / "connection_success.parquet"
    cmd = [sys.executable, str(BENCH / "duckdb_link.py"), "--date", DAY.isoformat()]
    cmd += ["--events", str(lake / "DeviceNetworkEvents"), "--out", str(out)]
    for proxy in PROXIES:
        cmd += ["--proxy", proxy]
    wall, rss, code = measure(cmd, workdir)
    run = Run("duckdb", repeat, round(wall, 3), round(rss, 1), code)
    if code != 0:
        raise ContenderFailed(f"duckdb baseline exited {code}:\n{stderr_tail(workdir)}")
    query = "SELECT LinkMethod, count(*) FROM read_parquet(?) GROUP BY ALL"
    with duckdb.connect() as con:
        found = dict(con.execute(query, [str(out)]).fetchall())
    run.methods = {m: int(found.get(m, 0)) for m in METHODS}
    run.rows = sum(found.values())
    return run


def median_run(runs: list[Run]) -> Run:
    """The run whose wall time is the (lower) median."""
    ordered = sorted(runs, key=lambda r: r.wall_s)
    return ordered[(len(ordered) - 1) // 2]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("polars", "duckdb", "pyarrow", "deltalake"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def summarise(runs: list[Run]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for name in CONTENDERS:
        mine = [r for r in runs if r.contender == name]
        summary[name] = {
            "median_wall_s": round(statistics.median(r.wall_s for r in mine), 3),
            "median_peak_rss_mb": round(statistics.median(r.peak_rss_mb for r in mine), 1),
        }
    p, d = summary["proxylink"], summary["duckdb"]
    # Each repeat runs both contenders back to back, so the ratio within a repeat is less
    # exposed to a neighbour's load than the ratio of medians taken over the whole session.
    by_repeat = {(r.contender, r.repeat): r.wall_s for r in runs}
    paired = [
        by_repeat[("proxylink", i)] / by_repeat[("duckdb", i)]
        for i in sorted({r.repeat for r in runs})
    ]
    summary["ratio_proxylink_over_duckdb"] = {
        "wall": round(p["median_wall_s"] / d["median_wall_s"], 3),
        "peak_rss": round(p["median_peak_rss_mb"] / d["median_peak_rss_mb"], 3),
        "wall_median_of_paired": round(statistics.median(paired), 3),
        "wall_paired": [round(x, 3) for x in paired],
    }
    return summary


def print_report(runs: list[Run], summary: dict[str, dict[str, float]]) -> None:
    print()
    print(f"{'contender':<12}{'median wall s':>15}{'median peak RSS MB':>20}   runs (wall s)")
    for name in CONTENDERS:
        walls = ", ".join(f"{r.wall_s:.1f}" for r in runs if r.contender == name)
        s = summary[name]
        print(f"{name:<12}{s['median_wall_s']:>15.2f}{s['median_peak_rss_mb']:>20.0f}   {walls}")
    ratio = summary["ratio_proxylink_over_duckdb"]
    paired = ", ".join(f"{x:.2f}" for x in ratio["wall_paired"])
    print(f"{'ratio p/d':<12}{ratio['wall']:>15.2f}{ratio['peak_rss']:>20.2f}   paired: {paired}")

    mid = median_run([r for r in runs if r.contender == "proxylink"])
    print(f"\nproxylink steps (median run, repeat {mid.repeat}, wall {mid.wall_s:.2f}s):")
    for step, secs in mid.durations_s.items():
        print(f"  {step:<10}{secs:>8.2f}s")
    rest = mid.wall_s - sum(mid.durations_s.values())
    print(f"  {'(outside)':<10}{rest:>8.2f}s  start-up, config, manifest, exit")

    last = {name: [r for r in runs if r.contender == name][-1] for name in CONTENDERS}
    print(f"\n{'rows of the day':<22}{'proxylink':>12}{'duckdb':>12}")
    print(f"{'curated rows':<22}{last['proxylink'].rows:>12,}{last['duckdb'].rows:>12,}")
    for m in METHODS:
        print(f"{'  ' + m:<22}{last['proxylink'].methods[m]:>12,}{last['duckdb'].methods[m]:>12,}")
    linked = {n: r.methods["socket"] + r.methods["process"] for n, r in last.items()}
    legs = {n: linked[n] + r.methods["unlinked"] for n, r in last.items()}
    print(f"{'legs':<22}{legs['proxylink']:>12,}{legs['duckdb']:>12,}")
    print(f"{'legs linked':<22}{linked['proxylink']:>12,}{linked['duckdb']:>12,}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4000)
    parser.add_argument("--connections-per-device", type=int, default=DEFAULT_CPD)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep every run's output")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    lake = ensure_lake(args.devices, args.connections_per_device, args.seed)
    events = lake / "DeviceNetworkEvents"
    params = LinkParams(proxies=tuple(parse_proxy(p) for p in PROXIES))
    planned = plan_files(events, DayWindow.for_day(DAY, params), params)
    own = [f.path for f in planned if f.start.date() == DAY]
    day_rows, planned_rows = parquet_rows(own), parquet_rows([f.path for f in planned])
    print(
        f"day {DAY.isoformat()}: {day_rows:,} events in {len(own)} hour files; "
        f"planned {len(planned)} files, {planned_rows:,} rows"
    )

    runs_dir = DATA / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    contenders = {"proxylink": run_proxylink, "duckdb": run_duckdb}
    runs: list[Run] = []
    try:
        for repeat in range(1, args.repeats + 1):
            for name in CONTENDERS:
                workdir = runs_dir / f"{name}-{repeat}"
                workdir.mkdir(parents=True)
                print(f"run {repeat}/{args.repeats} {name:<10}", end="", flush=True)
                run = contenders[name](lake, workdir, repeat)
                runs.append(run)
                print(f"{run.wall_s:8.2f}s {run.peak_rss_mb:8.0f} MB  {run.rows:,} rows")
                if not args.keep:
                    shutil.rmtree(workdir)
    except ContenderFailed as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1

    summary = summarise(runs)
    print_report(runs, summary)
    result: dict[str, Any] = {
        "day": DAY.isoformat(),
        "lake": str(lake),
        "devices": args.devices,
        "connections_per_device": args.connections_per_device,
        "seed": args.seed,
        "day_events": day_rows,
        "planned_files": len(planned),
        "planned_rows": planned_rows,
        "proxies": list(PROXIES),
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "versions": versions(),
        "summary": summary,
        "proxylink_median_durations_s": median_run(
            [r for r in runs if r.contender == "proxylink"]
        ).durations_s,
        "runs": [asdict(r) for r in runs],
    }
    out = DATA / "last-bench.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
