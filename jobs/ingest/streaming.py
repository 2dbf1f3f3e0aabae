"""Defender Streaming API records: where they sit in a capture file and how one becomes a row.

The Streaming API delivers each advanced-hunting event as
`{"time", "tenantId", "category", "properties": {...}}`: one per line in the storage-account
export (`PT1H.json`), batched as `{"records": [...]}` in Event Hub messages, and inside the
`Body` of each event in an Event Hub capture (Avro) file. This module knows those shapes and the
lake's column types; it reads a file handle it is given and writes nothing.

Values are kept as Defender sent them (an empty string stays empty, `RemoteIP` "-" stays "-"):
the run's normaliser owns the input contract. Only what cannot be stored in the lake's fixed
column types (a port of "abc", a Timestamp that is no time) stops a record from becoming a row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Final

import pyarrow as pa

from proxylink.transforms import schema as s
from proxylink.transforms.types import (
    ARROW_TYPES,
    BOOL,
    LAKE_COLUMNS,
    LONG,
    PORT,
    STRING,
    TIMESTAMP_KIND,
)

CATEGORY: Final = "AdvancedHunting-DeviceNetworkEvents"
AVRO_MAGIC: Final = b"Obj\x01"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)

COLUMN_NAMES: Final = tuple(name for name, _ in LAKE_COLUMNS)
_KNOWN: Final = frozenset(COLUMN_NAMES)


def lake_schema(extras: tuple[str, ...] = ()) -> pa.Schema:
    """The fixed columns, then any extra properties (always text) in the order given."""
    fields = [pa.field(name, ARROW_TYPES[kind]) for name, kind in LAKE_COLUMNS]
    return pa.schema(fields + [pa.field(name, pa.string()) for name in extras])


# --- where records sit in a file ------------------------------------------------------------


class UnreadableSource(Exception):
    """The file itself cannot be read on (a corrupt Avro block, a damaged header)."""


@dataclass(frozen=True)
class Located:
    """One record (or one unit that failed before it could yield records) and where it was.

    `line` is the 1-based line of a JSON-lines file or the 1-based event of an Avro file;
    `index` is the 0-based position inside a `{"records": [...]}` envelope, else None.
    """

    line: int
    index: int | None
    value: Any = None
    problem: tuple[str, str] | None = None  # (reason, detail) when the unit did not parse
    raw: str | None = None  # the text that did not parse


def sniff_avro(head: bytes) -> bool:
    """Avro object container files start with a magic number, whatever they are called."""
    return head.startswith(AVRO_MAGIC)


def _from_text(text: str, line: int) -> Iterator[Located]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        yield Located(line, None, problem=("malformed_json", str(exc)[:200]), raw=text)
        return
    if isinstance(value, dict) and "records" in value and "category" not in value:
        records = value["records"]
        if not isinstance(records, list):
            why = f"'records' is {type(records).__name__}, not a list"
            yield Located(line, None, problem=("bad_envelope", why), raw=text)
            return
        for i, record in enumerate(records):
            yield Located(line, i, record)
        return
    yield Located(line, None, value)


def read_json_lines(handle: BinaryIO) -> Iterator[Located]:
    """Records of a JSON-lines file: one record or one envelope per line; blank lines skipped."""
    for number, data in enumerate(handle, start=1):
        if number == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        data = data.rstrip(b"\r\n")
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = data.decode("utf-8", errors="replace")
            yield Located(number, None, problem=("bad_encoding", str(exc)[:200]), raw=raw)
            continue
        yield from _from_text(text, number)


def read_avro(handle: BinaryIO) -> Iterator[Located]:
    """Records of an Event Hub capture file: each event's `Body` is one record or an envelope."""
    import fastavro

    try:
        events = iter(fastavro.reader(handle))
    except Exception as exc:  # fastavro raises many types for a bad header
        raise UnreadableSource(f"not a readable Avro file ({_why(exc)})") from exc
    number = 0
    while True:
        try:
            event = next(events)
        except StopIteration:
            return
        except Exception as exc:  # a damaged block: the rest of the file cannot be trusted
            raise UnreadableSource(
                f"Avro data unreadable after event {number} ({_why(exc)})"
            ) from exc
        number += 1
        body = event.get("Body") if isinstance(event, dict) else None
        if isinstance(body, bytes | bytearray):
            try:
                text = bytes(body).decode("utf-8")
            except UnicodeDecodeError as exc:
                raw = bytes(body).decode("utf-8", errors="replace")
                yield Located(number, None, problem=("bad_encoding", str(exc)[:200]), raw=raw)
                continue
        elif isinstance(body, str):
            text = body
        else:
            why = "the event has no Body" if body is None else f"Body is {type(body).__name__}"
            yield Located(number, None, problem=("no_body", why), raw=_dump(event))
            continue
        if not text.strip():
            yield Located(number, None, problem=("no_body", "the Body is empty"), raw=text)
            continue
        yield from _from_text(text, number)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# --- from record to row -----------------------------------------------------------------------


class Quarantined(Exception):
    """A record that cannot become a lake row; `reason` is a short code, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Ignored:
    """A record of another advanced-hunting table (or another category altogether)."""

    category: str


@dataclass(frozen=True)
class Row:
    """One lake row: `values` follow LAKE_COLUMNS; `hour` is the UTC hour of its Timestamp."""

    hour: datetime
    values: list[Any]
    extras: dict[str, str | None] = field(default_factory=dict)


def convert(record: Any) -> Row | Ignored:
    """A DeviceNetworkEvents row, an ignored category, or Quarantined with the reason."""
    if not isinstance(record, dict):
        raise Quarantined("not_an_object", f"a JSON {type(record).__name__}, not a record")
    category = record.get("category")
    if not isinstance(category, str) or not category.strip():
        raise Quarantined("no_category", "the record has no category")
    if category.strip().lower() != CATEGORY.lower():
        return Ignored(category)
    props = record.get("properties")
    if not isinstance(props, dict):
        raise Quarantined("no_properties", "the record has no properties object")
    stamp = props.get(s.TIMESTAMP)
    if stamp is None or (isinstance(stamp, str) and not stamp.strip()):
        raise Quarantined("missing_Timestamp", "properties.Timestamp is missing or empty")
    values = list(map(props.get, COLUMN_NAMES))
    for i in _STRING_AT:  # text is by far the most common value: only the rest is converted
        value = values[i]
        if value is not None and type(value) is not str:
            values[i] = _text(value)
    for i, convert_value in _TYPED_AT:
        value = values[i]
        if value is None:
            continue
        try:
            values[i] = convert_value(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise Quarantined(f"bad_{COLUMN_NAMES[i]}", f"{_short(value)}: {exc}") from None
    micros = values[0]
    if micros is None:  # Timestamp was checked above; this keeps the partition honest
        raise Quarantined("missing_Timestamp", "properties.Timestamp is empty")
    hour = datetime.fromtimestamp((micros // 3_600_000_000) * 3600, tz=UTC)
    unknown = props.keys() - _KNOWN
    extras = {k: _text(props[k]) for k in unknown} if unknown else {}
    return Row(hour, values, extras)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else _dump(value)
    return repr(text[:80] + "…" if len(text) > 80 else text)


def _text(value: Any) -> str | None:
    """Text stays as it is; objects, lists, numbers and booleans become their JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _integer(value: Any, bounds: tuple[int, int]) -> int | None:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError("not a whole number")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None  # an empty string is a null in Defender exports
        try:
            number = int(text)
        except ValueError:
            as_float = float(text)  # ValueError for text that is no number at all
            if not math.isfinite(as_float) or not as_float.is_integer():
                raise ValueError("not a whole number") from None
            number = int(as_float)
    else:
        raise TypeError(f"a JSON {type(value).__name__} is not a number")
    if not bounds[0] <= number <= bounds[1]:
        raise OverflowError("out of range for the column type")
    return number


def _port(value: Any) -> int | None:
    """Ports are kept even outside 0..65535: the run rejects those with a reason."""
    return _integer(value, _INT32)


def _long(value: Any) -> int | None:
    return _integer(value, _INT64)


def _timestamp(value: Any) -> int | None:
    """Microseconds since the epoch, UTC. A time without a zone is taken as UTC; Defender's
    seven fractional digits are truncated to microseconds."""
    if not isinstance(value, str):
        raise TypeError(f"a JSON {type(value).__name__} is not a timestamp")
    text = value.strip()
    if not text:
        return None
    if len(text) <= 10:
        raise ValueError("a date without a time")
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in ("true", "false", "1", "0"):
            return text in ("true", "1")
    raise ValueError("not a boolean")


_CONVERTERS: Final = {PORT: _port, LONG: _long, TIMESTAMP_KIND: _timestamp, BOOL: _bool}
_STRING_AT: Final = tuple(i for i, (_, kind) in enumerate(LAKE_COLUMNS) if kind == STRING)
_TYPED_AT: Final = tuple(
    (i, _CONVERTERS[k]) for i, (_, k) in enumerate(LAKE_COLUMNS) if k != STRING
)
