"""Coerce raw DeviceNetworkEvents rows to the input contract and name what breaks it.

Real exports mix nulls and empty strings, store ports as strings now and then and sometimes
carry `AdditionalFields` as an object. Every row keeps its place (`_file`, `_row`): a row that
breaks the contract gets a reason in `_reject` instead of being dropped, so the counts reconcile.
"""

from __future__ import annotations

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms.params import LinkParams
from proxylink.transforms.types import (
    CONTRACT_DTYPES,
    PORT,
    STRING,
    of_kind,
)

# Internal bookkeeping columns that the job adds to every raw row.
FILE: str = "_file"
ROW: str = "_row"
PART_START: str = "_part_start"
PART_END: str = "_part_end"
REJECT: str = "_reject"
HOME_DAY: str = "_home_day"
AF_METHOD: str = "_af_method"
AF_HOST: str = "_af_host"
AF_URI: str = "_af_uri"
AF_SERVER_NAME: str = "_af_server_name"
INTERNAL = (FILE, ROW, PART_START, PART_END)

REASON = pl.Enum(s.REJECT_REASONS)
_SUSPECT = "_suspect"
_MASK = "_mask"

_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
)


def raw_name(column: str) -> str:
    """The shadow column that keeps a coerced column's original text."""
    return f"_raw_{column}"


def harmonise(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Give each contract column its contract dtype, so files of one lake concatenate.

    A column stored with another type (ports as text, a Timestamp as text) is parsed here, per
    file, and its original text is kept in `_raw_<column>` so that a value that does not parse
    is rejected with what it was. Objects (structs, lists) become JSON text.
    """
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        want = CONTRACT_DTYPES.get(name)
        if isinstance(dtype, pl.Struct | pl.List):
            exprs.append(_to_json(name, dtype).alias(name))
            continue
        if want is None or dtype == want:
            continue
        if isinstance(want, pl.Datetime) and isinstance(dtype, pl.Datetime):
            exprs.append(_as_utc(pl.col(name), dtype).alias(name))
        elif want.is_integer() and dtype.is_integer():
            exprs.append(pl.col(name).cast(pl.Int64).alias(name))
        elif want == pl.String:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
        else:
            text = pl.col(name).cast(pl.String)
            exprs.append(text.alias(raw_name(name)))
            exprs.append(_parse(text.str.strip_chars(), want).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def _parse(text: pl.Expr, want: pl.DataType) -> pl.Expr:
    if isinstance(want, pl.Datetime):
        return pl.coalesce(
            [
                text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
                for f in _TS_FORMATS
            ]
        )
    as_float = text.cast(pl.Float64, strict=False)
    whole = pl.when(as_float == as_float.round(0)).then(as_float).cast(pl.Int64, strict=False)
    return pl.coalesce(text.cast(pl.Int64, strict=False), whole)


def _to_json(name: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Struct):
        return pl.col(name).struct.json_encode()
    wrapped = pl.struct(pl.col(name).alias("v")).struct.json_encode()
    return wrapped.str.slice(5, None).str.head(-1)


def _as_utc(expr: pl.Expr, dtype: pl.Datetime) -> pl.Expr:
    if dtype.time_zone is None:
        expr = expr.dt.replace_time_zone("UTC")
    return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.contains(r"^\s*$")).then(None).otherwise(expr)


def coerce(raw: pl.LazyFrame) -> pl.LazyFrame:
    """The contract columns with contract types: blanks are null, ports outside 0..65535 null."""
    typed: list[pl.Expr] = []
    for name in of_kind(STRING):
        expr = _blank_to_null(pl.col(name))
        if name in (s.REMOTE_IP, s.LOCAL_IP):
            expr = pl.when(expr.str.contains(r"^\s*-\s*$")).then(None).otherwise(expr)
        typed.append(expr.alias(name))
    for name in of_kind(PORT):
        value = pl.col(name).cast(pl.Int64)
        typed.append(pl.when(value.is_between(0, 65535)).then(value).cast(pl.Int32).alias(name))
    typed.append(pl.col(s.REPORT_ID).cast(pl.Int64))
    typed.append(pl.col(s.PROCESS_ID).cast(pl.Int64))
    return raw.with_columns(typed)


def normalise(raw: pl.LazyFrame, params: LinkParams) -> pl.LazyFrame:
    """Typed contract columns plus `_reject` (first broken rule, or null) and `_home_day`.

    A row's home day is the UTC date of its Timestamp; a rejected row belongs to the day of
    its partition, so each row is counted by exactly one day's run.
    """
    schema = raw.collect_schema()
    missing = [c for c in s.REQUIRED_COLUMNS if c not in schema]
    if missing:
        raise ValueError(f"required column(s) missing: {', '.join(missing)}")

    def unparsed(name: str) -> pl.Expr:
        """A value was present in the file but did not parse."""
        if raw_name(name) not in schema:
            return pl.lit(False)
        text = pl.col(raw_name(name)).str.strip_chars()
        return text.is_not_null() & (text != "") & pl.col(name).is_null()

    bad_port = {
        name: unparsed(name) | ~pl.col(name).cast(pl.Int64).is_between(0, 65535).fill_null(True)
        for name in of_kind(PORT)
    }

    ts = pl.col(s.TIMESTAMP)
    skew = pl.duration(milliseconds=params.clock_skew_ms)
    checks: list[tuple[str, pl.Expr]] = [
        ("null_DeviceId", pl.col(s.DEVICE_ID).is_null()),
        ("bad_Timestamp", unparsed(s.TIMESTAMP)),
        ("null_Timestamp", ts.is_null()),
        ("bad_ReportId", unparsed(s.REPORT_ID)),
        ("null_ReportId", pl.col(s.REPORT_ID).is_null()),
        ("bad_LocalPort", pl.col("_bad_LocalPort")),
        ("bad_RemotePort", pl.col("_bad_RemotePort")),
        ("bad_InitiatingProcessId", unparsed(s.PROCESS_ID)),
        ("bad_InitiatingProcessCreationTime", unparsed(s.PROCESS_CREATION)),
        ("bad_AdditionalFields", _unparseable_evidence_fields()),
        (
            "Timestamp_outside_partition",
            (ts < pl.col(PART_START) - skew) | (ts >= pl.col(PART_END) + skew),
        ),
    ]
    home = (
        pl.when(pl.col(REJECT).is_null()).then(ts.dt.date()).otherwise(pl.col(PART_START).dt.date())
    )
    flags = [e.alias(f"_bad_{n}") for n, e in bad_port.items()]
    return (
        raw.with_columns(flags)
        .pipe(coerce)
        .with_columns(evidence_fields())
        .with_columns(_suspect_fields())
        .with_columns(_reject_mask(checks))
        .with_columns(_first_reason(len(checks)))
        .with_columns(home.alias(HOME_DAY))
        .drop([*(f"_bad_{n}" for n in bad_port), _SUSPECT, _MASK])
    )


def _reject_mask(checks: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """All broken rules of a row as one bit mask, bit i for check i."""
    assert [label for label, _ in checks] == list(s.REJECT_REASONS[: len(checks)])
    return pl.sum_horizontal(
        [cond.fill_null(False).cast(pl.UInt16) * (1 << i) for i, (_, cond) in enumerate(checks)]
    ).alias(_MASK)


def _first_reason(n_checks: int) -> pl.Expr:
    """The first broken rule, as an Enum: the lowest set bit of the mask. A chain of when/then
    branches over every row costs more than the checks themselves."""
    mask = pl.col(_MASK)
    first = pl.when(mask > 0).then(mask.bitwise_trailing_zeros())
    return first.replace_strict(
        list(range(n_checks)), list(s.REJECT_REASONS[:n_checks]), return_dtype=REASON
    ).alias(REJECT)


def _field(text: pl.Expr, key: str) -> pl.Expr:
    """A string field of a flat JSON object; a regular expression is many times faster than a
    JSON parser here, and the parser still judges every row where it finds nothing."""
    return text.str.extract(rf'"{key}"\s*:\s*"([^"]*)"', 1)


def evidence_fields() -> list[pl.Expr]:
    """The destination fields of inspection rows, read only where the row type has them."""
    action = pl.col(s.ACTION_TYPE)
    http = pl.when(action == s.HTTP_INSPECTED).then(pl.col(s.ADDITIONAL_FIELDS))
    ssl = pl.when(action == s.SSL_INSPECTED).then(pl.col(s.ADDITIONAL_FIELDS))
    return [
        _field(http, "method").alias(AF_METHOD),
        _field(http, "host").alias(AF_HOST),
        _field(http, "uri").alias(AF_URI),
        _field(ssl, "server_name").alias(AF_SERVER_NAME),
    ]


def _suspect_fields() -> pl.Expr:
    """The JSON of inspection rows where no destination field was found, else null: only these
    go through the JSON parser."""
    is_inspection = pl.col(s.ACTION_TYPE).is_in([s.HTTP_INSPECTED, s.SSL_INSPECTED])
    found = pl.col(AF_HOST).is_not_null() | pl.col(AF_URI).is_not_null()
    found = found | pl.col(AF_SERVER_NAME).is_not_null()
    return pl.when(is_inspection & ~found).then(pl.col(s.ADDITIONAL_FIELDS)).alias(_SUSPECT)


def _unparseable_evidence_fields() -> pl.Expr:
    """Inspection rows are read for their destination, so their `AdditionalFields` must be a
    JSON object: text that does not parse, and JSON that is not an object (`null`, `42`,
    `[1,2,3]`, `"x"`), are rejected alike. Blank is allowed (the row names nothing). Only the
    rows where no field was found go through the JSON parser."""
    is_inspection = pl.col(s.ACTION_TYPE).is_in([s.HTTP_INSPECTED, s.SSL_INSPECTED])
    fields = pl.when(is_inspection).then(pl.col(s.ADDITIONAL_FIELDS))
    blank = fields.str.contains(r"^\s*$")
    not_object = ~fields.str.contains(r"^\s*\{")
    suspect = pl.col(_SUSPECT)
    unparsed = suspect.is_not_null() & suspect.str.json_path_match("$").is_null()
    return fields.is_not_null() & ~blank & (not_object | unparsed)
