"""Benchmark `proxylink run` against a hand-written DuckDB baseline on a day of ~7M events.

Each run is a separate child process, so its wall time and peak memory are its whole cost:
interpreter start, planning, reading, linking and writing (for proxylink also the validation,
the Delta commit and the manifest). Peak memory is the larger of `os.wait4`'s ru_maxrss and the
peak summed RSS of the child's process tree, sampled every 0.2 s, because the Spark engine's
JVM is a grandchild whose memory ru_maxrss does not see. The contenders alternate within each
repeat so that a warm page cache or a busy neighbour favours none.

`--scales 1,3` benches a lake of 1x and one of 3x the devices in one invocation (Spark at the
first size only) and prints how each contender's wall time and peak memory grew.

The Spark engine (`proxylink run --engine spark`, local[*]) runs in the first repeat only by
default (`--spark-repeats`), paired with that repeat's polars run; `--spark-repeats 0` leaves it
out. `--cluster-workers N` also runs `deploy/spark/spark-submit.sh` once against a standalone
cluster of N one-core workers on 127.0.0.1 (deploy/spark/standalone.py); its executors' CPU and
memory count too.

    .venv/bin/python bench/run_bench.py [--devices 4000] [--connections-per-device N]
                                        [--repeats 3] [--spark-repeats 1] [--cluster-workers 2]
                                        [--scales 1,3] [--keep]

Results go to stdout and to bench/.data/last-bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from proxylink.jobs.nightly.manifest import versions
from proxylink.jobs.nightly.plan import plan_files
from proxylink.jobs.sample import LAKE_FORMAT, SampleSpec, write_sample
from proxylink.transforms.params import DayWindow, LinkParams, parse_proxy

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / ".data"
DAY = date(2026, 11, 1)
PROXIES = ("10.20.0.5:8080", "10.20.0.6:3128")
BENCH_DISTRIBUTIONS = ("proxylink", "polars", "duckdb", "pyarrow", "deltalake", "pyspark")
# The generator writes ~2.93 rows per connection, so 600 connections per device per day give
# about 7.0M events for 4,000 devices.
DEFAULT_CPD = 600
LAKE_DONE = ".complete"
CONTENDERS = ("proxylink", "duckdb", "spark", "cluster")
SPARK_CONF = ROOT / "conf" / "spark.yaml"
METHODS = ("socket", "process", "unlinked", "evidence_only", "direct")


@dataclass
class Run:
    """One child process: what it cost and what it produced."""

    contender: str
    repeat: int
    wall_s: float
    peak_rss_mb: float
    exit_code: int
    cpu_s: float = 0.0  # user + system CPU of the child and its descendants
    rows: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)
    step_details_s: dict[str, float] = field(default_factory=dict)  # "step.inner" -> s
    details: dict[str, Any] = field(default_factory=dict)  # the manifest's engine_details


class ContenderFailed(Exception):
    """A child exited non-zero; the message carries its stderr tail."""


def ensure_lake(devices: int, cpd: int, seed: int) -> Path:
    """The bench lake, generated once and reused; a half-written lake is generated again."""
    lake = DATA / f"lake-{devices}-{cpd}-{seed}-v{LAKE_FORMAT}"
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


PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> dict[int, tuple[int, int]]:
    """(RSS KiB, CPU ticks) of `root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    usage: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        usage[pid] = (int(fields[21]) * PAGE_KB, int(fields[11]) + int(fields[12]))
    found: dict[int, tuple[int, int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in usage:
            found[pid] = usage[pid]
        todo.extend(children.get(pid, []))
    return found


class TreeSampler(threading.Thread):
    """Samples process trees until stopped: the peak of their summed RSS, and the CPU time each
    process had used when last seen (a JVM's CPU time is not in the child's rusage). `others`
    are more roots, such as a standalone cluster's workers, whose executors do the work."""

    def __init__(self, pid: int, every_s: float = 0.2, others: Sequence[int] = ()) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_kb = pid, every_s, 0
        self.others = list(others)
        self.cpu_ticks: dict[int, int] = {}
        self.base_ticks = {p: t for root in self.others for p, (_, t) in _tree(root).items()}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            tree = _tree(self.pid)
            for root in self.others:
                tree |= _tree(root)
            self.peak_kb = max(self.peak_kb, sum(rss for rss, _ in tree.values()))
            for pid, (_, ticks) in tree.items():
                self.cpu_ticks[pid] = max(self.cpu_ticks.get(pid, 0), ticks)
            self.done.wait(self.every_s)

    def descendants_cpu_s(self) -> float:
        """CPU seconds of every process below the child itself (and of the other trees, less
        what they had used before the child started)."""
        used = {p: t - self.base_ticks.get(p, 0) for p, t in self.cpu_ticks.items()}
        return sum(t for pid, t in used.items() if pid != self.pid) / TICKS


def measure(
    cmd: list[str], workdir: Path, env: dict[str, str] | None = None, others: Sequence[int] = ()
) -> tuple[float, float, float, int]:
    """Run `cmd` as a child; return (wall s, peak memory MB, CPU s, exit code).

    `os.wait4` gives the child's own peak (ru_maxrss, KiB on Linux) and CPU time; the sampler
    adds what its descendants (the Spark JVM) hold and use.
    """
    with (workdir / "stdout.txt").open("wb") as out, (workdir / "stderr.txt").open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, env=env)
        sampler = TreeSampler(proc.pid, others=others)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # already reaped: keep Popen from waiting again
    cpu = usage.ru_utime + usage.ru_stime + sampler.descendants_cpu_s()
    return wall, max(usage.ru_maxrss, sampler.peak_kb) / 1024, cpu, code


def stderr_tail(workdir: Path, lines: int = 25) -> str:
    text = (workdir / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def run_proxylink(lake: Path, workdir: Path, repeat: int, engine: str = "polars") -> Run:
    """`proxylink run` for the day into a fresh curated root; counts from its manifest."""
    name = "proxylink" if engine == "polars" else engine
    curated = workdir / "curated"
    cmd = [str(Path(sys.executable).parent / "proxylink"), "run", "--date", DAY.isoformat()]
    if engine == "spark":
        cmd += ["--conf", str(SPARK_CONF), "--engine", "spark"]
    cmd += ["--events", str(lake / "DeviceNetworkEvents"), "--curated", str(curated)]
    for proxy in PROXIES:
        cmd += ["--proxy", proxy]
    wall, rss, cpu, code = measure(cmd, workdir)
    return _with_manifest(Run(name, repeat, round(wall, 3), round(rss, 1), code, round(cpu, 2)),
                          workdir, curated)  # fmt: skip


def _with_manifest(run: Run, workdir: Path, curated: Path) -> Run:
    """The run with the counts, step durations and engine details of its manifest."""
    if run.exit_code != 0:
        raise ContenderFailed(f"{run.contender} exited {run.exit_code}:\n{stderr_tail(workdir)}")
    manifests = sorted((curated / "_manifests" / f"date={DAY.isoformat()}").glob("*.json"))
    if not manifests:
        raise ContenderFailed(f"proxylink wrote no manifest under {curated / '_manifests'}")
    manifest = json.loads(manifests[-1].read_text(encoding="utf-8"))
    counts = manifest["counts"]
    run.rows = counts["curated"]
    run.methods = {m: counts.get(f"method_{m}", 0) for m in METHODS}
    run.durations_s = manifest["durations_s"]
    run.step_details_s = manifest.get("step_details_s", {})
    run.details = manifest.get("engine_details", {})
    return run


def run_cluster(lake: Path, workdir: Path, repeat: int, master: str, pids: list[int]) -> Run:
    """`deploy/spark/spark-submit.sh` against a standalone cluster on this machine; the CPU and
    memory of its executors (under the workers) count as well as the driver's."""
    curated = workdir / "curated"
    conf = workdir / "cluster.yaml"
    conf.write_text(
        (ROOT / "conf" / "spark-cluster.yaml")
        .read_text()
        .replace("/lake/defender/DeviceNetworkEvents", str(lake / "DeviceNetworkEvents"))
        .replace("/lake/curated", str(curated))
    )
    env = {
        **os.environ,
        "PROXYLINK_HOME": str(ROOT),
        "PROXYLINK_CONF": str(conf),
        "SPARK_MASTER": master,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "EXECUTOR_MEMORY": "1g",
        "EXECUTOR_CORES": "1",
        "EXECUTOR_MEMORY_OVERHEAD": "2g",
        "EXECUTOR_PYTHON": sys.executable,
    }
    cmd = ["bash", str(ROOT / "deploy" / "spark" / "spark-submit.sh")]
    cmd += ["--date", DAY.isoformat(), "--lookback", "0"]
    wall, rss, cpu, code = measure(cmd, workdir, env=env, others=pids)
    run = Run("cluster", repeat, round(wall, 3), round(rss, 1), code, round(cpu, 2))
    return _with_manifest(run, workdir, curated)


def run_duckdb(lake: Path, workdir: Path, repeat: int) -> Run:
    """The DuckDB baseline in its own interpreter; counts read back from its Parquet output."""
    out = workdir / "connection_success.parquet"
    cmd = [sys.executable, str(BENCH / "duckdb_link.py"), "--date", DAY.isoformat()]
    cmd += ["--events", str(lake / "DeviceNetworkEvents"), "--out", str(out)]
    for proxy in PROXIES:
        cmd += ["--proxy", proxy]
    wall, rss, cpu, code = measure(cmd, workdir)
    run = Run("duckdb", repeat, round(wall, 3), round(rss, 1), code, round(cpu, 2))
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


def _ratio(runs: list[Run], over: str, under: str) -> dict[str, Any]:
    """`over`/`under` as a ratio of medians and paired within each repeat both ran in.

    Runs of one repeat are back to back, so the paired ratio is less exposed to a neighbour's
    load than the ratio of medians taken over the whole session.
    """
    mine = {n: [r for r in runs if r.contender == n] for n in (over, under)}
    med = {
        n: (statistics.median(r.wall_s for r in rs), statistics.median(r.peak_rss_mb for r in rs))
        for n, rs in mine.items()
    }
    by_repeat = {(r.contender, r.repeat): r.wall_s for r in runs}
    paired = [
        by_repeat[(over, i)] / by_repeat[(under, i)]
        for i in sorted({r.repeat for r in mine[over]})
        if (under, i) in by_repeat
    ]
    cpu = {n: statistics.median(r.cpu_s for r in rs) for n, rs in mine.items()}
    return {
        "wall": round(med[over][0] / med[under][0], 3),
        "cpu": round(cpu[over] / cpu[under], 3),
        "peak_rss": round(med[over][1] / med[under][1], 3),
        "wall_median_of_paired": round(statistics.median(paired), 3),
        "wall_paired": [round(x, 3) for x in paired],
    }


def summarise(runs: list[Run]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    present = [n for n in CONTENDERS if any(r.contender == n for r in runs)]
    for name in present:
        mine = [r for r in runs if r.contender == name]
        summary[name] = {
            "runs": len(mine),
            "median_wall_s": round(statistics.median(r.wall_s for r in mine), 3),
            "median_peak_rss_mb": round(statistics.median(r.peak_rss_mb for r in mine), 1),
            "median_cpu_s": round(statistics.median(r.cpu_s for r in mine), 2),
        }
    summary["ratio_proxylink_over_duckdb"] = _ratio(runs, "proxylink", "duckdb")
    for name in ("spark", "cluster"):
        if name in present:
            summary[f"ratio_{name}_over_polars"] = _ratio(runs, name, "proxylink")
    return summary


def print_report(runs: list[Run], summary: dict[str, dict[str, Any]], lake_events: int) -> None:
    present = [n for n in CONTENDERS if n in summary]
    print()
    print(
        f"{'contender':<12}{'median wall s':>15}{'median peak MB':>16}{'median CPU s':>14}"
        "   runs (wall s)"
    )
    for name in present:
        walls = ", ".join(f"{r.wall_s:.1f}" for r in runs if r.contender == name)
        s = summary[name]
        print(
            f"{name:<12}{s['median_wall_s']:>15.2f}{s['median_peak_rss_mb']:>16.0f}"
            f"{s['median_cpu_s']:>14.1f}   {walls}"
        )
    for key, label in (
        ("ratio_proxylink_over_duckdb", "proxylink / duckdb"),
        ("ratio_spark_over_polars", "spark / polars"),
        ("ratio_cluster_over_polars", "standalone cluster / polars"),
    ):
        if key in summary:
            ratio = summary[key]
            paired = ", ".join(f"{x:.2f}" for x in ratio["wall_paired"])
            print(
                f"ratio {label}: wall {ratio['wall']:.2f} (paired: {paired}), "
                f"CPU {ratio['cpu']:.2f}, peak memory {ratio['peak_rss']:.2f}"
            )
    for name in ("spark", "cluster"):
        if name not in summary:
            continue
        # CPU seconds are what a cluster pays for, and unlike wall time they barely change when
        # a neighbour loads this shared machine: the basis of the sizing estimate.
        cores = os.cpu_count() or 1
        sp = summary[name]
        per_cpu = lake_events / sp["median_cpu_s"]
        busy = sp["median_cpu_s"] / (sp["median_wall_s"] * cores)
        print(
            f"{name} throughput: {per_cpu:,.0f} events per CPU-second "
            f"({lake_events:,} planned events, {sp['median_cpu_s']:.0f} CPU s, whole run incl. "
            f"JVM start); {cores} cores were {busy:.0%} busy"
        )

    for name in ("proxylink", "spark", "cluster"):
        if name not in summary:
            continue
        mid = median_run([r for r in runs if r.contender == name])
        print(f"\n{name} steps (median run, repeat {mid.repeat}, wall {mid.wall_s:.2f}s):")
        for step, secs in mid.durations_s.items():
            print(f"  {step:<10}{secs:>8.2f}s  {secs / mid.wall_s:>4.0%}")
            for key, inner in mid.step_details_s.items():
                if key.startswith(f"{step}."):
                    print(f"    {key.split('.', 1)[1]:<10}{inner:>8.2f}s")
        rest = mid.wall_s - sum(mid.durations_s.values())
        print(f"  {'(outside)':<10}{rest:>8.2f}s  start-up, config, manifest, exit")
        tasks = mid.details.get("task_seconds")
        if tasks:
            shape = (
                f"{mid.details['read_tasks']} read tasks, {mid.details['partitions']} device "
                f"partitions, {mid.details['name_partitions']} name partitions"
            )
            print(f"  task seconds, summed over tasks ({shape}):")
            for phase, secs in tasks.items():
                print(f"    {phase:<10}{secs:>8.2f}s")

    last = {name: [r for r in runs if r.contender == name][-1] for name in present}
    print(f"\n{'rows of the day':<22}" + "".join(f"{n:>12}" for n in present))
    print(f"{'curated rows':<22}" + "".join(f"{last[n].rows:>12,}" for n in present))
    for m in METHODS:
        print(f"{'  ' + m:<22}" + "".join(f"{last[n].methods[m]:>12,}" for n in present))
    linked = {n: r.methods["socket"] + r.methods["process"] for n, r in last.items()}
    legs = {n: linked[n] + r.methods["unlinked"] for n, r in last.items()}
    print(f"{'legs':<22}" + "".join(f"{legs[n]:>12,}" for n in present))
    print(f"{'legs linked':<22}" + "".join(f"{linked[n]:>12,}" for n in present))


def _cluster_run(lake: Path, runs_dir: Path, workers: int, keep: bool) -> Run:
    """One run on a standalone cluster started for it (deploy/spark/standalone.py)."""
    import importlib.util

    path = ROOT / "deploy" / "spark" / "standalone.py"
    spec = importlib.util.spec_from_file_location("standalone", path)
    assert spec is not None and spec.loader is not None
    standalone = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = standalone  # dataclasses look their module up there
    spec.loader.exec_module(standalone)
    workdir = runs_dir / "cluster-1"
    workdir.mkdir(parents=True)
    with standalone.standalone(workdir / "cluster", workers=workers, memory="2g") as cluster:
        print(f"run 1/1 cluster ({workers} workers)", end="", flush=True)
        run = run_cluster(lake, workdir, 1, cluster.master, cluster.pids)
    print(f"{run.wall_s:8.2f}s {run.peak_rss_mb:8.0f} MB  {run.rows:,} rows")
    if not keep:
        shutil.rmtree(workdir)
    return run


def _scales(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        scales = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--scales must be whole numbers separated by commas, got {text!r}")
    if not scales or any(x < 1 for x in scales) or len(set(scales)) != len(scales):
        parser.error(f"--scales needs distinct sizes >= 1, got {text!r}")
    return sorted(scales)


def bench_lake(
    lake: Path, *, repeats: int, spark_repeats: int, cluster_workers: int, keep: bool
) -> dict[str, Any] | None:
    """Alternating runs of every contender on one lake; its summary, or None if one failed."""
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
    contenders: dict[str, Callable[[Path, Path, int], Run]] = {
        "proxylink": run_proxylink,
        "duckdb": run_duckdb,
        "spark": partial(run_proxylink, engine="spark"),
    }
    runs: list[Run] = []
    try:
        for repeat in range(1, repeats + 1):
            for name in contenders:
                if name == "spark" and repeat > spark_repeats:
                    continue
                workdir = runs_dir / f"{name}-{repeat}"
                workdir.mkdir(parents=True)
                print(f"run {repeat}/{repeats} {name:<10}", end="", flush=True)
                run = contenders[name](lake, workdir, repeat)
                runs.append(run)
                print(f"{run.wall_s:8.2f}s {run.peak_rss_mb:8.0f} MB  {run.rows:,} rows")
                if not keep:
                    shutil.rmtree(workdir)
        if cluster_workers:
            runs.append(_cluster_run(lake, runs_dir, cluster_workers, keep))
    except ContenderFailed as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return None

    summary = summarise(runs)
    print_report(runs, summary, planned_rows)
    return {
        "day": DAY.isoformat(),
        "lake": str(lake),
        "day_events": day_rows,
        "planned_files": len(planned),
        "planned_rows": planned_rows,
        "proxies": list(PROXIES),
        "repeats": repeats,
        "summary": summary,
        "median_durations_s": {
            name: median_run([r for r in runs if r.contender == name]).durations_s
            for name in ("proxylink", "spark", "cluster")
            if name in summary
        },
        "runs": [asdict(r) for r in runs],
    }


def _growth(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each larger size against the smallest: how events, wall time and peak memory grew."""
    if len(results) < 2:
        return []
    base = results[0]
    rows = []
    for other in results[1:]:
        row: dict[str, Any] = {
            "scale": f"{other['scale']}x / {base['scale']}x",
            "events": round(other["planned_rows"] / base["planned_rows"], 3),
        }
        for name in ("proxylink", "duckdb"):
            a, b = base["summary"][name], other["summary"][name]
            row[name] = {
                "wall": round(b["median_wall_s"] / a["median_wall_s"], 3),
                "peak_rss": round(b["median_peak_rss_mb"] / a["median_peak_rss_mb"], 3),
            }
        row["proxylink_over_duckdb_wall"] = other["summary"]["ratio_proxylink_over_duckdb"]["wall"]
        rows.append(row)
    return rows


def print_growth(growth: list[dict[str, Any]]) -> None:
    print("\ngrowth with size (medians):")
    for row in growth:
        for name in ("proxylink", "duckdb"):
            g = row[name]
            print(
                f"  {row['scale']} ({row['events']:.2f}x the events) {name:<10}"
                f" wall {g['wall']:.2f}x, peak memory {g['peak_rss']:.2f}x"
            )
        print(f"  {row['scale']} proxylink / duckdb wall at that size: "
              f"{row['proxylink_over_duckdb_wall']:.2f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4000)
    parser.add_argument("--connections-per-device", type=int, default=DEFAULT_CPD)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--spark-repeats",
        type=int,
        default=1,
        help="how many of the first repeats also run the Spark engine (0: none)",
    )
    parser.add_argument(
        "--cluster-workers",
        type=int,
        default=0,
        help="also run deploy/spark/spark-submit.sh once on a standalone cluster of this many "
        "one-core workers on 127.0.0.1 (0: no)",
    )
    parser.add_argument(
        "--scales",
        default="1",
        help="comma-separated sizes, as multiples of --devices (e.g. 1,3): each gets its own "
        "lake and its own alternating runs, and the report shows how wall time and memory grow",
    )
    parser.add_argument("--keep", action="store_true", help="keep every run's output")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if not 0 <= args.spark_repeats <= args.repeats:
        parser.error("--spark-repeats must be between 0 and --repeats")

    scales = _scales(parser, args.scales)
    results: list[dict[str, Any]] = []
    for scale in scales:
        devices = args.devices * scale
        if len(scales) > 1:
            print(f"\n=== scale {scale}x: {devices:,} devices ===")
        lake = ensure_lake(devices, args.connections_per_device, args.seed)
        # Spark and the cluster run at the first size only: their ratio to polars is the
        # question there, and growth with size is polars' own.
        first = scale == scales[0]
        result = bench_lake(
            lake,
            repeats=args.repeats,
            spark_repeats=args.spark_repeats if first else 0,
            cluster_workers=args.cluster_workers if first else 0,
            keep=args.keep,
        )
        if result is None:
            return 1
        result.update(
            scale=scale,
            devices=devices,
            connections_per_device=args.connections_per_device,
            seed=args.seed,
        )
        results.append(result)
    growth = _growth(results)
    if growth:
        print_growth(growth)
    out_doc: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "versions": versions(BENCH_DISTRIBUTIONS),
        "scales": results,
        "growth": growth,
    }
    out = DATA / "last-bench.json"
    out.write_text(json.dumps(out_doc, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
