"""Defender Streaming API exports → the Hive-partitioned DeviceNetworkEvents lake.

Each source file (a storage-account `PT1H.json`, an Event Hub capture `.avro`, any JSON-lines
file) owns a fixed set of lake files named after it: `ingest-<key>.parquet` in every
`date=/hour=` partition its events' `Timestamp`s fall in, where `<key>` is a hash of the source's
absolute path. Re-ingesting a file therefore rewrites the same names, and a ledger entry per
source (`_ingest/ledger/<key>.json`) lists what it wrote, so a changed file replaces all its
previous outputs, including partitions it no longer touches, and an unchanged one is skipped.

New files are written under hidden temporary names and renamed into place only after the
whole source was read, so a crash or a corrupt source never leaves half a file in the lake.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import pyarrow as pa
import pyarrow.parquet as pq

from proxylink.jobs.errors import InputError, LockHeld
from proxylink.jobs.ingest.streaming import (
    Ignored,
    Located,
    Quarantined,
    Row,
    UnreadableSource,
    convert,
    lake_schema,
    read_avro,
    read_json_lines,
    sniff_avro,
)
from proxylink.jobs.nightly.lock import curated_lock
from proxylink.transforms.types import ARROW_TYPES, LAKE_COLUMNS

log = logging.getLogger(__name__)

TABLE: Final = "DeviceNetworkEvents"
STATE_DIR: Final = "_ingest"
SOURCE_SUFFIXES: Final = (".json", ".ndjson", ".jsonl", ".avro")
DEFAULT_BATCH_ROWS: Final = 50_000
MAX_OPEN_WRITERS: Final = 32
_TMP_PREFIX: Final = ".ingest-"
_TMP_SUFFIX: Final = ".parquet.tmp"


@dataclass
class FileResult:
    """What one source file came to; `records` = `written` + ignored + quarantined."""

    source: Path
    key: str
    status: str = "ingested"  # ingested | skipped | failed
    message: str = ""
    records: int = 0
    written: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    outputs: list[str] = field(default_factory=list)
    removed: int = 0  # earlier outputs of this source that are gone now
    seconds: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.records == self.written + self.ignored.total() + self.quarantined.total()


@dataclass
class IngestReport:
    lake: Path
    files: list[FileResult]
    not_sources: int = 0  # files under PATH whose suffix is not one we read

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def total(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    def sum(self, what: str) -> int:
        return sum(int(getattr(f, what)) for f in self.files if f.status == "ingested")

    def counter(self, what: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for f in self.files:
            if f.status == "ingested":
                out.update(getattr(f, what))
        return out

    @property
    def quarantine_dir(self) -> Path:
        return self.lake / STATE_DIR / "quarantine"

    @property
    def ledger_dir(self) -> Path:
        return self.lake / STATE_DIR / "ledger"


def source_key(path: Path) -> str:
    """Names every output of one source: the same absolute path always gives the same key."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def find_sources(source: Path, lake: Path) -> tuple[list[Path], int]:
    """The files to read (one file, or every JSON/Avro file below a folder) and how many other
    files the folder held. Hidden files and anything inside the lake are never sources."""
    if source.is_file():
        return [source], 0
    if not source.is_dir():
        raise InputError(f"--from {source} does not exist")
    lake_abs = lake.resolve()
    found: list[Path] = []
    others = 0
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() != lake_abs
        )
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith(SOURCE_SUFFIXES):
                found.append(here / name)
            else:
                others += 1
    if not found:
        raise InputError(
            f"no {', '.join(SOURCE_SUFFIXES)} files under {source} (expected a storage-account "
            "export or an Event Hub capture folder)"
        )
    return found, others


def ingest(
    source: Path,
    lake: Path,
    *,
    force: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_file: Callable[[FileResult], None] | None = None,
) -> IngestReport:
    """Ingest every source file under `source` into `lake`; a failed file does not stop the rest."""
    files, others = find_sources(source, lake)
    state = lake / STATE_DIR
    report = IngestReport(lake, [], others)
    try:
        with curated_lock(state, 0.0, "ingest"):
            _remove_stale_temps(lake / TABLE)
            for path in files:
                result = _ingest_file(path, lake, force=force, batch_rows=batch_rows)
                report.files.append(result)
                if on_file is not None:
                    on_file(result)
    except LockHeld:
        raise LockHeld(f"another ingest is writing to {lake} (lock {state})") from None
    return report


# --- one source file ---------------------------------------------------------------------------


def _ingest_file(path: Path, lake: Path, *, force: bool, batch_rows: int) -> FileResult:
    t0 = time.perf_counter()
    key = source_key(path)
    result = FileResult(path, key)
    ledger = _Ledger(lake / STATE_DIR / "ledger")
    try:
        stat = path.stat()  # before reading: a file that grows meanwhile is read again next time
        entry = ledger.get(key)
        if not force and entry is not None and _unchanged(entry, path, stat, lake):
            if entry.get("mtime_ns") != stat.st_mtime_ns:  # same bytes, touched: remember
                ledger.put(key, {**entry, "mtime_ns": stat.st_mtime_ns})
            result.status = "skipped"
            result.message = f"unchanged since {entry.get('ingested_at', '?')}"
            result.outputs = list(entry.get("outputs", []))
            result.seconds = time.perf_counter() - t0
            return result
        sinks = _Sinks(lake / TABLE, key, batch_rows)
        quarantine = _QuarantineFile(lake / STATE_DIR / "quarantine", key, str(path))
        try:
            digest = _read(path, result, sinks, quarantine)
            written = sinks.close()
        except (UnreadableSource, OSError) as exc:
            sinks.discard()
            quarantine.discard()
            result.status = "failed"
            result.message = str(exc) if isinstance(exc, UnreadableSource) else _os_why(exc)
            result.seconds = time.perf_counter() - t0
            return result
        result.outputs, result.removed = _commit(lake, written, entry)
        kept = quarantine.commit()
        ledger.put(key, _entry(path, stat, digest, result, kept, lake))
    except OSError as exc:  # the lake itself cannot be written
        result.status = "failed"
        result.message = f"cannot write the lake: {_os_why(exc)}"
    result.seconds = time.perf_counter() - t0
    log.info(
        "ingested %s: %d records, %d rows, %d ignored, %d quarantined",
        path,
        result.records,
        result.written,
        result.ignored.total(),
        result.quarantined.total(),
    )
    return result


def _os_why(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _read(path: Path, result: FileResult, sinks: _Sinks, quarantine: _QuarantineFile) -> str:
    """Route every record of the file to a partition, the ignored counts or the quarantine;
    returns the SHA-256 of the bytes read."""
    with path.open("rb") as raw:
        hashing = _HashingReader(raw)
        handle = io.BufferedReader(hashing, buffer_size=1 << 20)
        records: Iterator[Located] = (
            read_avro(handle) if sniff_avro(handle.peek(4)[:4]) else read_json_lines(handle)
        )
        for located in records:
            result.records += 1
            if located.problem is not None:
                reason, detail = located.problem
                result.quarantined[reason] += 1
                quarantine.add(located, reason, detail, located.raw)
                continue
            try:
                outcome = convert(located.value)
            except Quarantined as q:
                result.quarantined[q.reason] += 1
                quarantine.add(located, q.reason, q.detail, None)
                continue
            if isinstance(outcome, Ignored):
                result.ignored[outcome.category] += 1
            else:
                sinks.add(outcome)
                result.written += 1
        handle.read()  # the hash covers the whole file, also after an Avro reader stops early
        return hashing.hexdigest()


class _HashingReader(io.RawIOBase):
    """A raw stream that hashes what passes through, so a file is read once for both."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._hash.update(data)
        return n

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unchanged(entry: dict[str, Any], path: Path, stat: os.stat_result, lake: Path) -> bool:
    """Same size and (same mtime or same content), and every listed output still there."""
    if entry.get("size") != stat.st_size:
        return False
    if entry.get("mtime_ns") != stat.st_mtime_ns and entry.get("sha256") != _sha256(path):
        return False
    return all((lake / out).is_file() for out in entry.get("outputs", []))


# --- the lake files of one source -------------------------------------------------------------


class _Part:
    """The lake file(s) of one source in one partition; a new part starts when new extra columns
    appear or the writer had to be closed to stay under the open-file limit."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder, self.key = folder, key
        self.temps: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.extras: tuple[str, ...] = ()

    def write(self, table: pa.Table) -> None:
        new = [c for c in table.column_names[len(LAKE_COLUMNS) :] if c not in self.extras]
        if self.writer is None or new:
            self.close()
            self.extras = (*self.extras, *new)
            self.folder.mkdir(parents=True, exist_ok=True)
            n = len(self.temps)
            temp = self.folder / f"{_TMP_PREFIX}{self.key}{f'-{n}' if n else ''}{_TMP_SUFFIX}"
            self.temps.append(temp)
            self.writer = pq.ParquetWriter(temp, lake_schema(self.extras), compression="zstd")
        for name in self.extras:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
        self.writer.write_table(table.select(list(lake_schema(self.extras).names)))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _Buffer:
    """Rows of one partition waiting to be written; turned into columns only when written."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.extras: list[dict[str, str | None]] = []
        self.has_extras = False

    def add(self, row: Row) -> None:
        self.rows.append(row.values)
        self.extras.append(row.extras)
        self.has_extras = self.has_extras or bool(row.extras)

    def table(self) -> pa.Table:
        columns = zip(*self.rows, strict=True)
        arrays = [
            pa.array(values, type=ARROW_TYPES[kind])
            for values, (_, kind) in zip(columns, LAKE_COLUMNS, strict=True)
        ]
        names = [name for name, _ in LAKE_COLUMNS]
        if self.has_extras:
            for name in sorted({k for extra in self.extras for k in extra}):
                arrays.append(pa.array([e.get(name) for e in self.extras], type=pa.string()))
                names.append(name)
        return pa.Table.from_arrays(arrays, names=names)


class _Sinks:
    """Buffers rows per partition and writes them once `batch_rows` rows are waiting in all, so
    memory stays bounded whatever the size of the source."""

    def __init__(self, root: Path, key: str, batch_rows: int) -> None:
        self.root, self.key, self.batch_rows = root, key, batch_rows
        self.buffers: dict[datetime, _Buffer] = {}
        self.parts: dict[datetime, _Part] = {}
        self.waiting = 0
        self._open: list[datetime] = []  # partitions with an open writer, oldest first

    def add(self, row: Row) -> None:
        buffer = self.buffers.get(row.hour)
        if buffer is None:
            buffer = self.buffers[row.hour] = _Buffer()
        buffer.add(row)
        self.waiting += 1
        if self.waiting >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        for hour in sorted(self.buffers):
            part = self.parts.get(hour)
            if part is None:
                folder = self.root / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
                part = self.parts[hour] = _Part(folder, self.key)
            if part.writer is None and len(self._open) >= MAX_OPEN_WRITERS:
                self.parts[self._open.pop(0)].close()
            part.write(self.buffers[hour].table())
            if hour in self._open:
                self._open.remove(hour)
            self._open.append(hour)
        self.buffers.clear()
        self.waiting = 0

    def close(self) -> list[Path]:
        """Write what is left and close every file; returns the temporary files."""
        self.flush()
        for part in self.parts.values():
            part.close()
        return [t for part in self.parts.values() for t in part.temps]

    def discard(self) -> None:
        for part in self.parts.values():
            with contextlib.suppress(OSError):
                part.close()
            for temp in part.temps:
                temp.unlink(missing_ok=True)


def _final_name(temp: Path) -> Path:
    return temp.with_name(temp.name[1 : -len(".tmp")])


def _commit(lake: Path, temps: list[Path], entry: dict[str, Any] | None) -> tuple[list[str], int]:
    """Rename the new files into place, then remove earlier outputs that were not rewritten."""
    outputs: list[str] = []
    for temp in temps:
        final = _final_name(temp)
        os.replace(temp, final)
        outputs.append(final.relative_to(lake).as_posix())
    removed = 0
    for old in (entry or {}).get("outputs", []):
        if old in outputs:
            continue
        path = lake / old
        if path.is_file():
            path.unlink()
            removed += 1
        _remove_empty_parents(path.parent, lake / TABLE)
    return outputs, removed


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return
        folder = folder.parent


def _remove_stale_temps(root: Path) -> None:
    """Temporary files of a run that was killed; nobody else writes them while we hold the lock."""
    if root.is_dir():
        for temp in root.glob(f"date=*/hour=*/{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            log.warning("removing the temporary file of an interrupted ingest: %s", temp)
            temp.unlink(missing_ok=True)


# --- quarantine and ledger --------------------------------------------------------------------


class _QuarantineFile:
    """`_ingest/quarantine/<key>.ndjson`: one JSON line per record that did not become a row,
    with SourceFile, Line, Record (position in an envelope), Reason, Detail and Raw."""

    def __init__(self, folder: Path, key: str, source: str) -> None:
        self.final = folder / f"{key}.ndjson"
        self.temp = folder / f".{key}.ndjson.tmp"
        self.source = source
        self.handle: io.TextIOWrapper | None = None
        self.rows = 0

    def add(self, located: Located, reason: str, detail: str, raw: str | None) -> None:
        if self.handle is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.temp.open("w", encoding="utf-8")
        if raw is None:
            raw = json.dumps(located.value, separators=(",", ":"), ensure_ascii=False)
        line = {
            "SourceFile": self.source,
            "Line": located.line,
            "Record": located.index,
            "Reason": reason,
            "Detail": detail,
            "Raw": raw,
        }
        self.handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.rows += 1

    def commit(self) -> str | None:
        """Replace this source's earlier quarantine; returns the file, or None when empty."""
        if self.handle is None:
            self.final.unlink(missing_ok=True)
            return None
        self.handle.close()
        os.replace(self.temp, self.final)
        return str(self.final)

    def discard(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.temp.unlink(missing_ok=True)


class _Ledger:
    """One JSON file per source, so lookups stay cheap and a crash damages at most one entry."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("ledger entry %s is unreadable; the source is ingested again", key)
            return None
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self.folder / f".{key}.json.tmp"
        temp.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
        os.replace(temp, self.folder / f"{key}.json")


def _entry(
    path: Path,
    stat: os.stat_result,
    digest: str,
    result: FileResult,
    quarantine: str | None,
    lake: Path,
) -> dict[str, Any]:
    return {
        "source": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": digest,
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": result.records,
        "written": result.written,
        "ignored": dict(sorted(result.ignored.items())),
        "quarantined": dict(sorted(result.quarantined.items())),
        "outputs": result.outputs,
        "quarantine": str(Path(quarantine).relative_to(lake)) if quarantine else None,
    }
