"""The Spark runner: Spark distributes the day, the polars link core computes it.

Linking is local to a device: every join of the core keys on `DeviceId`, and dedupe is by
(`DeviceId`, `Timestamp`, `ReportId`). So Spark does what it is good at, and nothing else:

- it reads the planned files in parallel, one task per slice of a file, with the lake reader
  every engine uses (so every file is typed as the polars runner types it);
- it shuffles the rows by a hash of `DeviceId` into partitions of about `spark.rows_per_task`
  rows, each holding whole devices;
- each partition is built by the polars core inside a task, which stages its Parquet files;
- the `domain_daily` partials are shuffled by name and merged into staged files too;
- tasks are retried and speculated as Spark sees fit.

The driver collects only small records: which files each successful task attempt staged, and
what it counted. The counts add up exactly (`transforms.engine.DaySummary`), delta-rs commits
exactly the files the result names, and files of failed attempts are removed. The tasks are
in `jobs/engines/spark_tasks.py`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

from proxylink.jobs.config import Config
from proxylink.jobs.engines import spark_tasks
from proxylink.jobs.engines.runner import Built, DayBuild, skipping, with_skipping
from proxylink.jobs.engines.spark_session import SparkSettings, build_session
from proxylink.jobs.engines.spark_tasks import META, RECORD_SCHEMA, DayJob, DiscoveryJob, ReadUnit
from proxylink.jobs.errors import InputError, OutputError
from proxylink.jobs.nightly import lake
from proxylink.jobs.nightly.plan import PlannedFile
from proxylink.jobs.nightly.stage import StageTargets
from proxylink.jobs.timing import Timer
from proxylink.transforms.aggregates import DOMAIN_DAILY_TABLE
from proxylink.transforms.engine import DaySummary, EngineUnavailable
from proxylink.transforms.params import DayWindow

log = logging.getLogger(__name__)

# Blobs per Arrow batch between the JVM and a Python worker: a blob holds up to
# spark_tasks.BLOB_ROWS rows, so a batch stays far below Arrow's 2 GB per binary column.
ARROW_RECORDS_PER_BATCH = "4"
_CHECKED: set[str] = set()  # Spark applications whose executors passed the environment check


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def spark_hash_int(value: int, seed: int = 42) -> int:
    """Spark's `hash()` of an int column (Murmur3 x86 32-bit, seed 42), as a signed int.

    `repartition(n, col)` puts a row in partition `pmod(hash(col), n)`; `partition_keys` uses
    this to pick the key that lands in each partition (a test checks it against Spark)."""
    k1 = (value & 0xFFFFFFFF) * 0xCC9E2D51 & 0xFFFFFFFF
    k1 = _rotl(k1, 15) * 0x1B873593 & 0xFFFFFFFF
    h1 = _rotl(seed ^ k1, 13)
    h1 = (h1 * 5 + 0xE6546B64) & 0xFFFFFFFF
    h1 ^= 4
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & 0xFFFFFFFF
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & 0xFFFFFFFF
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 >= 1 << 31 else h1


def partition_keys(n: int) -> tuple[int, ...]:
    """For each partition b of a hash shuffle into n, the smallest key Spark puts there: so each
    device bucket gets a task of its own, instead of some tasks two buckets and others none."""
    keys: dict[int, int] = {}
    k = 0
    while len(keys) < n:
        keys.setdefault(spark_hash_int(k) % n, k)
        k += 1
    return tuple(keys[b] for b in range(n))


def read_units(files: list[PlannedFile], rows_per_unit: int) -> list[ReadUnit]:
    """Slices of the files of at most `rows_per_unit` rows, cut at row-group boundaries (a
    larger row group is a slice of its own), from the footers."""
    units: list[ReadUnit] = []
    for i, f in enumerate(files):
        meta = pq.ParquetFile(f.path).metadata
        start = rows = 0
        for g in range(meta.num_row_groups):
            size = meta.row_group(g).num_rows
            if rows and rows + size > rows_per_unit:
                units.append(ReadUnit(i, start, rows))
                start, rows = start + rows, 0
            rows += size
        if rows or not units or units[-1].file != i:
            units.append(ReadUnit(i, start, rows))
    return units


class SparkRunner:
    """One Spark session per process; one Spark job per day."""

    def __init__(self, config: Config) -> None:
        self.conf = config.spark
        self._session: SparkSession | None = None

    @property
    def session(self) -> SparkSession:
        """Started on first use: a day whose files fail their footer checks starts no JVM."""
        if self._session is None:
            conf = self.conf
            settings = SparkSettings(conf.master, conf.app_name, dict(conf.options))
            self._session = build_session(settings)
        return self._session

    def partitions(self, rows: int) -> int:
        """Build partitions: about `rows_per_task` rows each, a multiple of the cores."""
        if self.conf.partitions is not None:
            return self.conf.partitions
        cores = max(1, self.session.sparkContext.defaultParallelism)
        return max(1, math.ceil(rows / self.conf.rows_per_task / cores)) * cores

    def _plan(
        self, files: list[PlannedFile], on_corrupt: str
    ) -> tuple[lake.LakeScan, list[ReadUnit], int]:
        """Footers first (a bad file starts no Spark), then the read units, the executors'
        environment and the number of device partitions."""
        scan = lake.scan_lake(files, on_corrupt)
        units = read_units(scan.files, self.conf.rows_per_read_task)
        check_environment(self.session)
        return scan, units, self.partitions(sum(u.rows for u in units))

    def _collect(self, frame: DataFrame, what: str, files: list[PlannedFile]) -> pa.Table:
        """Run a job; a failure becomes the one-line error it means (`task_failure`)."""
        spark = self.session
        conf = spark.conf
        before = conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
        spark.sparkContext.setJobDescription(what)
        conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", ARROW_RECORDS_PER_BATCH)
        try:
            return frame.toArrow()
        except Exception as exc:
            raise task_failure(exc, files) from None
        finally:
            conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", before or "10000")
            spark.sparkContext.setJobDescription(None)  # type: ignore[arg-type]

    def _reads(self, units: list[ReadUnit]) -> DataFrame:
        """One row, and one partition, per read unit: its index."""
        return self.session.range(0, len(units), 1, numPartitions=len(units))

    def build(self, day: DayBuild, timer: Timer) -> Built:
        def attempt(files: list[PlannedFile]) -> Built:
            scan, units, n = self._plan(files, day.on_corrupt)
            n_names = max(1, math.ceil(n / 8))
            job = DayJob(
                files=tuple(scan.files),
                target=scan.schema,
                units=tuple(units),
                window=day.window,
                params=day.params,
                targets=day.targets,
                rules=day.rules,
                build_keys=partition_keys(n),
                domain_keys=partition_keys(n_names),
                fault=os.environ.get(spark_tasks.FAULT_ENV),
            )
            log.info(
                "spark: %d rows in %d read tasks, %d device partitions, %d name partitions",
                sum(u.rows for u in units),
                len(units),
                n,
                n_names,
            )
            frame = (
                self._reads(units)
                .mapInArrow(partial(spark_tasks.read_units, job=job), RECORD_SCHEMA)
                .repartition(n, "key")
                .mapInArrow(partial(spark_tasks.build_partitions, job=job), RECORD_SCHEMA)
                .repartition(n_names, "key")
                .mapInArrow(partial(spark_tasks.domain_partitions, job=job), RECORD_SCHEMA)
            )
            # A failed job's files are removed by `with_skipping` (before a retry) and by the
            # nightly run (on any failure), as for every runner.
            with timer.step("link"):
                result = self._collect(frame, f"proxylink {day.window.day}", scan.files)
            built = _gather(_metas(result), job, day.targets)
            built.skipped = list(scan.skipped)
            return built

        return with_skipping(day.planned, day.on_corrupt, day.targets, attempt)

    def socket_evidence(
        self, planned: list[PlannedFile], window: DayWindow, on_corrupt: str
    ) -> tuple[list[PlannedFile], pl.DataFrame]:
        """Discovery's evidence per IP:port over every device of the day: each read task counts
        its slice, the counts are shuffled by socket and merged, and the day's distinct devices
        (shuffled by device) are summed on the driver."""

        def attempt(files: list[PlannedFile]) -> tuple[list[PlannedFile], pl.DataFrame]:
            scan, units, n = self._plan(files, on_corrupt)
            job = DiscoveryJob(
                tuple(scan.files), scan.schema, tuple(units), window.start, window.end,
                partition_keys(n),
            )  # fmt: skip
            frame = (
                self._reads(units)
                .mapInArrow(partial(spark_tasks.discovery_units, job=job), RECORD_SCHEMA)
                .repartition(n, "key")
                .mapInArrow(partial(spark_tasks.discovery_merge, job=job), RECORD_SCHEMA)
            )
            result = self._collect(frame, f"proxylink discovery {window.day}", scan.files)
            kinds, payloads = result.column("kind").to_pylist(), result.column("payload")
            sockets = [pl.read_ipc(payloads[i].as_py()) for i, k in enumerate(kinds) if k != META]
            devices = sum(m["devices"] for m in _metas(result))
            evidence = pl.concat(sockets).with_columns(
                pl.lit(devices, pl.UInt32).alias("day_devices")
            )
            return scan.files, evidence

        return skipping(planned, on_corrupt, attempt)[0]


def _metas(result: pa.Table) -> list[dict[str, Any]]:
    kinds = result.column("kind").to_pylist()
    payloads = result.column("payload").to_pylist()
    return [json.loads(p) for k, p in zip(kinds, payloads, strict=True) if k == META]


def _gather(metas: list[dict[str, Any]], job: DayJob, targets: StageTargets) -> Built:
    """The staged files and summed counts of the attempts that succeeded; other files go."""
    by_stage: dict[str, dict[int, dict[str, Any]]] = {"read": {}, "build": {}, "domains": {}}
    for meta in metas:
        key = meta["unit"] if meta["stage"] == "read" else meta["part"]
        by_stage[meta["stage"]].setdefault(key, meta)
    expected = {
        "read": len(job.units),
        "build": len(job.build_keys),
        "domains": len(job.domain_keys),
    }
    for name, n in expected.items():
        if sorted(by_stage[name]) != list(range(n)):
            raise RuntimeError(f"the Spark job returned {len(by_stage[name])} of {n} {name} tasks")
    staged: dict[str, list[Path]] = {}
    for meta in [*by_stage["build"].values(), *by_stage["domains"].values()]:
        for table, paths in meta["staged"].items():
            staged.setdefault(table, []).extend(Path(p) for p in paths)
    kept = {p for paths in staged.values() for p in paths}
    orphans = targets.orphans(kept)
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    if orphans:
        log.info("removed %d files of failed or superseded task attempts", len(orphans))
    summary = DaySummary.merge([spark_tasks.summary_of(m) for m in by_stage["build"].values()])
    seconds: dict[str, float] = {}
    for stage_metas in by_stage.values():
        for meta in stage_metas.values():
            for phase, value in meta["seconds"].items():
                seconds[phase] = round(seconds.get(phase, 0.0) + value, 3)
    day_rows = [m["summary"]["fates"].get("rows_in_day", 0) for m in by_stage["build"].values()]
    details = {
        "read_tasks": len(job.units),
        "partitions": len(job.build_keys),
        "name_partitions": len(job.domain_keys),
        "largest_partition_rows_in_day": max(day_rows, default=0),
        "task_seconds": seconds,
        "polars_threads_per_task": sorted({m["threads"] for m in by_stage["build"].values()}),
        "python_worker_peak_mb": max(m["worker_peak_mb"] for m in by_stage["build"].values()),
        "orphans_removed": len(orphans),
    }
    staged.setdefault(DOMAIN_DAILY_TABLE, [])
    return Built(summary.result(job.names), list(job.files), staged, details=details)


# A ProxylinkError raised inside a task reaches the driver as text: the last line of the
# Python traceback Spark reports, `module.Class: message`.
_RAISED = re.compile(r"^(?:[\w.]+\.)?(UnreadableFile|OutputError|InputError): (.+)$", re.M)
_UNREADABLE = re.compile(r"^(.*): unreadable Parquet data \((.*)\)$")


def task_failure(exc: Exception, files: list[PlannedFile]) -> Exception:
    """The error a failed Spark job means: the one-line error a task raised, an executor
    environment problem, or a job failure described by its last Python line."""
    text = str(exc)
    raised = _RAISED.findall(text)
    if raised:
        kind, message = raised[-1]
        found = _UNREADABLE.match(message)
        if kind == "UnreadableFile" and found:
            for f in files:
                if str(f.path) == found.group(1):
                    return lake.UnreadableFile(f, found.group(2))
        return OutputError(message) if kind == "OutputError" else InputError(message)
    problem = environment_problem(text)
    if problem is not None:
        return EngineUnavailable(problem)
    return RuntimeError(f"the Spark job failed: {_last_error_line(text)}")


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*[\w.]+(Error|Exception)", ln)]
    return lines[-1] if lines else (text.strip().splitlines() or ["no message"])[0]


def environment_problem(text: str) -> str | None:
    """What is wrong with the executors' Python, if the failure text says so."""
    hint = "see docs/spark.md"
    missing = re.search(r"ModuleNotFoundError: No module named '([^']+)'", text)
    if missing:
        return (
            f"the executors' Python cannot import {missing.group(1)!r}: it needs proxylink and "
            f"its dependencies; set PYSPARK_PYTHON to such an environment ({hint})"
        )
    mismatch = re.search(r"Python in worker has different version:? ?\(?([\d.]+)\)? than", text)
    if mismatch or "PYTHON_VERSION_MISMATCH" in text:
        return f"the executors run another Python version than the driver ({hint})"
    absent = re.search(r"Cannot run program \"([^\"]+)\"", text)
    if absent:
        return f"the executors' Python {absent.group(1)} cannot be started ({hint})"
    return None


def check_environment(session: SparkSession) -> None:
    """Once per Spark application: the executors' Python imports proxylink, with the driver's
    versions of Python, proxylink, polars and pyarrow; else one clear line (EngineUnavailable)."""
    app = session.sparkContext.applicationId
    if app in _CHECKED:
        return
    probe = session.range(0, 1, 1, numPartitions=1).mapInArrow(spark_tasks.probe, RECORD_SCHEMA)
    try:
        got = probe.toArrow()
    except Exception as exc:
        text = str(exc)
        raise EngineUnavailable(
            environment_problem(text)
            or f"the executors cannot run Python tasks: {_last_error_line(text)}"
        ) from None
    theirs = json.loads(got.column("payload")[0].as_py())
    ours = spark_tasks.environment()
    differ = [k for k in ("python", "proxylink", "polars", "pyarrow") if theirs[k] != ours[k]]
    if differ:
        shown = ", ".join(f"{k} {theirs[k]} (driver {ours[k]})" for k in differ)
        raise EngineUnavailable(
            f"the executors' Python environment ({theirs['executable']}) differs from the "
            f"driver's: {shown}; ship the driver's environment (see docs/spark.md)"
        )
    _CHECKED.add(app)
