"""What the Spark runner's tasks run on the executors: polars code, called through `mapInArrow`.

Three stages, one Spark job (`jobs.engines.spark_run` builds it):

1. read: a task reads a slice of one planned file with the lake reader every engine uses
   (`jobs.nightly.lake.file_frame`), cuts its rows into device buckets and sends each bucket's
   rows on as one Arrow IPC blob, keyed so that bucket b lands in shuffle partition b.
2. build: a task gets every row of its devices, spills the blobs to local disk, builds them
   with the one link core (`build_day`), stages its curated, rejected and `proxy_coverage` rows
   as Parquet files of partition D, and sends on its summary and the `domain_daily` partials of
   its rows, keyed by name.
3. domains: a task gets the partials of its names from every build task and stages their
   `domain_daily` rows.

Rows travel as Arrow IPC written and read by polars, so Spark never types a row: each one keeps
the dtypes the lake reader gave it, exactly as in the polars runner. Every task yields records
of `RECORD_SCHEMA`; the small `meta` records (JSON: files staged, summaries, timings) travel to
the driver with the job's result. Only files named in the result are committed: a failed or
superseded task attempt's files are never published.
"""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from proxylink.jobs.nightly import lake, publish, stage
from proxylink.jobs.nightly.plan import PlannedFile
from proxylink.jobs.nightly.stage import StageTargets
from proxylink.transforms import discover as d
from proxylink.transforms import schema as s
from proxylink.transforms.engine import DaySummary
from proxylink.transforms.params import DayWindow, LinkParams
from proxylink.transforms.polars_engine import aggregates
from proxylink.transforms.polars_engine.engine import build_day
from proxylink.transforms.polars_engine.normalise import ROW
from proxylink.transforms.psl import SuffixRules

log = logging.getLogger(__name__)

RECORD_SCHEMA = "key int, kind string, part int, payload binary"
ROWS, META, URLS, PROCS = "rows", "meta", "urls", "procs"
BLOB_ROWS = 50_000  # rows per IPC blob: bounds one Arrow batch between Spark and Python
FAULT_ENV = "PROXYLINK_FAULT"  # tests only: `stage:partition[:exit]` fails its first attempt


@dataclass(frozen=True)
class ReadUnit:
    """Rows [offset, offset + rows) of planned file `file` (its index)."""

    file: int
    offset: int
    rows: int


@dataclass(frozen=True)
class DayJob:
    """Everything the tasks of one day's job need; pickled into each task."""

    files: tuple[PlannedFile, ...]
    target: pl.Schema  # the lake frame's schema (jobs.nightly.lake.target_schema)
    units: tuple[ReadUnit, ...]
    window: DayWindow
    params: LinkParams
    targets: StageTargets
    rules: SuffixRules
    build_keys: tuple[int, ...]  # key that lands in build partition b (jobs.engines.spark_run)
    domain_keys: tuple[int, ...]
    fault: str | None = None

    @property
    def names(self) -> list[str]:
        return [str(f.path) for f in self.files]


def bucket(values: pl.Series, n: int) -> pl.Series:
    """A bucket in [0, n) per value, by CRC-32 of its UTF-8 text: the same on every machine and
    Python version (polars' own hash is not promised to be). Null (and blank) values get
    bucket -1; callers spread those."""
    distinct = values.drop_nulls().unique()
    codes = [zlib.crc32(v.encode("utf-8", "surrogatepass")) % n for v in distinct.to_list()]
    lookup = pl.DataFrame({"v": distinct, "b": pl.Series(codes, dtype=pl.Int32)})
    keyed = pl.DataFrame({"v": values}).join(lookup, on="v", how="left", maintain_order="left")
    return keyed["b"].fill_null(-1)


def _record(key: int, kind: str, part: int, payload: bytes) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array([key], pa.int32()),
            pa.array([kind], pa.string()),
            pa.array([part], pa.int32()),
            pa.array([payload], pa.binary()),
        ],
        names=["key", "kind", "part", "payload"],
    )


def _ipc(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_ipc(out, compression="lz4")
    return out.getvalue()


def _meta(key: int, of: int, **fields: Any) -> pa.RecordBatch:
    return _record(key, META, of, json.dumps(fields).encode())


def _records(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, str, int, bytes]]:
    for batch in batches:
        cols = batch.to_pydict()
        yield from zip(cols["key"], cols["kind"], cols["part"], cols["payload"], strict=True)


def _task() -> tuple[int, int]:
    """(partition, attempt) of the running task."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return 0, 0
    return ctx.partitionId(), ctx.attemptNumber()


def _maybe_fail(job: DayJob, stage_name: str, part: int, attempt: int) -> None:
    """The test switch: fail the first attempt of a task, after its work (files included).

    `job.fault` lists `stage:task[:mode]` entries, comma-separated. Mode `exit` kills the
    Python worker, as a lost executor would, instead of raising; `always` fails every attempt.
    """
    if job.fault is None:
        return
    for entry in job.fault.split(","):
        want, _, rest = entry.strip().partition(":")
        target, _, mode = rest.partition(":")
        if want != stage_name or target != str(part) or (attempt > 0 and mode != "always"):
            continue
        if mode == "exit":
            os._exit(17)
        raise RuntimeError(f"{FAULT_ENV}: {stage_name} task {part} fails (attempt {attempt})")


# --- stage 1: read -------------------------------------------------------------------------


def read_units(batches: Iterable[pa.RecordBatch], job: DayJob) -> Iterator[pa.RecordBatch]:
    """Each input row is the index of a read unit (`spark.range`); see the module docstring."""
    for batch in batches:
        for uid in batch.column("id").to_pylist():
            yield from _read_unit(job, int(uid))


def _read_unit(job: DayJob, uid: int) -> Iterator[pa.RecordBatch]:
    t0 = time.perf_counter()
    part, attempt = _task()
    unit = job.units[uid]
    f = job.files[unit.file]
    try:
        rows = lake.file_frame(unit.file, f, job.target).slice(unit.offset, unit.rows).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise lake.UnreadableFile(f, why) from None
    n = len(job.build_keys)
    buckets = bucket(rows[s.DEVICE_ID], n)
    # Rows without a device are rejected whatever else they hold: spread them by position, so
    # that a file of them never lands on one task.
    spread = (rows[ROW].cast(pl.Int64) + unit.file) % n
    rows = rows.with_columns(pl.when(buckets >= 0).then(buckets).otherwise(spread).alias("_bucket"))
    sent = 0
    for (b,), group in rows.partition_by("_bucket", as_dict=True).items():
        body = group.drop("_bucket")
        for offset in range(0, body.height, BLOB_ROWS):
            chunk = body.slice(offset, BLOB_ROWS)
            yield _record(job.build_keys[int(b)], ROWS, int(b), _ipc(chunk))
            sent += 1
    _maybe_fail(job, "read", part, attempt)
    yield _meta(
        job.build_keys[uid % n],
        uid % n,
        stage="read",
        unit=uid,
        part=part,
        rows=rows.height,
        blobs=sent,
        seconds={"read": time.perf_counter() - t0},
    )


# --- stage 2: build ------------------------------------------------------------------------


def _local_dir() -> str | None:
    """Spark's scratch folder of this executor (it sets SPARK_LOCAL_DIRS for Python)."""
    dirs = os.environ.get("SPARK_LOCAL_DIRS", "")
    first = dirs.split(",")[0].strip()
    return first if first and os.path.isdir(first) else None


def build_partitions(batches: Iterable[pa.RecordBatch], job: DayJob) -> Iterator[pa.RecordBatch]:
    """Build one device partition; see the module docstring. Yields its records."""
    part, attempt = _task()
    t0 = time.perf_counter()
    spill = Path(tempfile.mkdtemp(prefix="proxylink-", dir=_local_dir()))
    try:
        blobs: list[Path] = []
        forwarded: list[pa.RecordBatch] = []
        n3 = len(job.domain_keys)
        stray = 0
        for _key, kind, bucket_of, payload in _records(batches):
            if kind == ROWS:
                if bucket_of != part:
                    stray += 1
                path = spill / f"{len(blobs):06d}.arrow"
                path.write_bytes(payload)
                blobs.append(path)
            else:
                forwarded.append(_record(job.domain_keys[part % n3], kind, bucket_of, payload))
        t_spill = time.perf_counter()
        raw = pl.scan_ipc(blobs) if blobs else pl.LazyFrame(schema=job.target)
        frames, summary = build_day(raw, job.window, job.params, job.names)
        t_link = time.perf_counter()
        rows = stage.stage_rows(frames, job.targets, part)
        staged = rows.files
        t_write = time.perf_counter()
        urls, procs = rows.domains
        records = [*_routed(URLS, urls, job.domain_keys), *_routed(PROCS, procs, job.domain_keys)]
        _maybe_fail(job, "build", part, attempt)
        done = time.perf_counter()
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    if stray:
        log.warning("build task %d got %d blobs of other partitions", part, stray)
    yield from forwarded
    yield from records
    yield _meta(
        job.domain_keys[part % n3],
        part,
        stage="build",
        part=part,
        attempt=attempt,
        host=socket.gethostname(),
        threads=pl.thread_pool_size(),
        # The Python worker's peak so far (workers are reused, so it covers earlier tasks too).
        worker_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        blobs=len(blobs),
        staged={name: [str(p) for p in paths] for name, paths in staged.items()},
        summary=summary.to_json(),
        seconds={
            "spill": t_spill - t0,
            "link": t_link - t_spill,
            "write": t_write - t_link,
            "aggregate": done - t_write,
        },
    )


def _routed(
    kind: str, rows: pl.DataFrame, keys: tuple[int, ...], by: pl.Expr | None = None
) -> Iterator[pa.RecordBatch]:
    """Partials cut by a text key (the name, by default) into the partitions of `keys`."""
    by = pl.col(s.REMOTE_URL) if by is None else by
    n = len(keys)
    rows = rows.with_columns(bucket(rows.select(by.cast(pl.String)).to_series(), n).alias("_b"))
    for (b,), group in rows.partition_by("_b", as_dict=True).items():
        yield _record(keys[int(b)], kind, int(b), _ipc(group.drop("_b")))


# --- stage 3: domains ----------------------------------------------------------------------


def domain_partitions(batches: Iterable[pa.RecordBatch], job: DayJob) -> Iterator[pa.RecordBatch]:
    """Stage the `domain_daily` rows of one partition of names; forward every meta record."""
    part, attempt = _task()
    t0 = time.perf_counter()
    urls: list[bytes] = []
    procs: list[bytes] = []
    metas: list[pa.RecordBatch] = []
    for key, kind, of, payload in _records(batches):
        if kind == URLS:
            urls.append(payload)
        elif kind == PROCS:
            procs.append(payload)
        else:
            metas.append(_record(key, kind, of, payload))
    empty = aggregates.domain_partials(pl.LazyFrame(schema=publish.EMPTY_CURATED_SCHEMA))
    partials = (
        pl.scan_ipc(urls) if urls else empty[0],
        pl.scan_ipc(procs) if procs else empty[1],
    )
    staged = stage.stage_domains(partials, job.rules, job.targets, part)
    _maybe_fail(job, "domains", part, attempt)
    yield from metas
    yield _meta(
        0,
        part,
        stage="domains",
        part=part,
        attempt=attempt,
        staged={"domain_daily": [str(p) for p in staged]},
        seconds={"domains": time.perf_counter() - t0},
    )


# --- proxy discovery: a day-wide count, merged by socket ----------------------------------


@dataclass(frozen=True)
class DiscoveryJob:
    """What the tasks of a day's discovery need: the files, and the day [start, end)."""

    files: tuple[PlannedFile, ...]
    target: pl.Schema
    units: tuple[ReadUnit, ...]
    start: datetime
    end: datetime
    keys: tuple[int, ...]  # key that lands in merge partition b


_SOCKET = pl.format("{}:{}", pl.col("ip"), pl.col("port"))
_PARTIALS = ("devices", "names", "inspection", "day_devices")


def discovery_units(
    batches: Iterable[pa.RecordBatch], job: DiscoveryJob
) -> Iterator[pa.RecordBatch]:
    """Each read unit's discovery partials, cut by socket (the devices by device)."""
    for batch in batches:
        for uid in batch.column("id").to_pylist():
            unit = job.units[int(uid)]
            f = job.files[unit.file]
            frame = lake.file_frame(unit.file, f, job.target).slice(unit.offset, unit.rows)
            try:
                parts = d.socket_partials(frame, job.start, job.end)
                collected = pl.collect_all([getattr(parts, name) for name in _PARTIALS])
            except (pl.exceptions.PolarsError, OSError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise lake.UnreadableFile(f, why) from None
            for name, rows in zip(_PARTIALS, collected, strict=True):
                by = pl.col(s.DEVICE_ID) if name == "day_devices" else _SOCKET
                yield from _routed(name, rows, job.keys, by)


def discovery_merge(
    batches: Iterable[pa.RecordBatch], job: DiscoveryJob
) -> Iterator[pa.RecordBatch]:
    """The socket evidence of one partition of sockets, and its share of the day's devices."""
    blobs: dict[str, list[bytes]] = {name: [] for name in _PARTIALS}
    for _key, kind, _of, payload in _records(batches):
        blobs[kind].append(payload)
    part, _ = _task()
    empty = d.socket_partials(pl.LazyFrame(schema=job.target), job.start, job.end)
    merged = d.SocketPartials(
        *[pl.scan_ipc(blobs[n]) if blobs[n] else getattr(empty, n) for n in _PARTIALS]
    )
    merged = d.SocketPartials.merge([merged])
    sockets = d.socket_evidence_of(merged, 0).collect()
    devices = int(merged.day_devices.select(pl.len()).collect().item())
    yield _record(0, "sockets", part, _ipc(sockets))
    yield _meta(0, part, stage="discovery", part=part, devices=devices)


# --- the executor environment --------------------------------------------------------------


def probe(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """What the executor's Python has: checked against the driver's before a day's job."""
    for _ in batches:
        pass
    yield _meta(0, 0, **environment())


def environment() -> dict[str, str]:
    return {
        "python": ".".join(map(str, sys.version_info[:2])),
        "proxylink": version("proxylink"),
        "polars": pl.__version__,
        "pyarrow": pa.__version__,
        "executable": sys.executable,
    }


def summary_of(meta: dict[str, Any]) -> DaySummary:
    return DaySummary.from_json(meta["summary"])
