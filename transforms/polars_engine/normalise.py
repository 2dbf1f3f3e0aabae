"""Coerce raw DeviceNetworkEvents rows to the input contract and name what breaks it.

Real exports mix nulls and empty strings, store ports as strings now and then and sometimes
carry `AdditionalFields` as an object. Every row keeps its place (`_file`, `_row`): a row that
breaks the contract gets a reason instead of being dropped, so the counts reconcile. The rules
on numbers and times are judged per row here (`_mask`); those on text per distinct value, in
`classify`, which names the first broken rule (`_reject`).
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


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    """Blank text (empty or white space) is no value."""
    return pl.when(expr.str.contains(r"^\s*$")).then(None).otherwise(expr)


def blank_ip_to_null(expr: pl.Expr) -> pl.Expr:
    """An address that is blank or `-` is no address."""
    expr = blank_to_null(expr)
    return pl.when(expr.str.contains(r"^\s*-\s*$")).then(None).otherwise(expr)


def ports() -> list[pl.Expr]:
    """The port columns as the contract types them: a port outside 0..65535 is none."""
    typed = []
    for name in of_kind(PORT):
        value = pl.col(name).cast(pl.Int64)
        typed.append(pl.when(value.is_between(0, 65535)).then(value).cast(pl.Int32).alias(name))
    return typed


def coerce(raw: pl.LazyFrame) -> pl.LazyFrame:
    """The contract columns with contract types: blanks are null, ports outside 0..65535 null."""
    typed: list[pl.Expr] = []
    for name in of_kind(STRING):
        clean = blank_ip_to_null if name in (s.REMOTE_IP, s.LOCAL_IP) else blank_to_null
        typed.append(clean(pl.col(name)).alias(name))
    typed += ports()
    typed.append(pl.col(s.REPORT_ID).cast(pl.Int64))
    typed.append(pl.col(s.PROCESS_ID).cast(pl.Int64))
    return raw.with_columns(typed)


# The text columns the link core reads: read as codes of one `pl.Categories` per build, so that
# their rules are judged once per distinct value (`classify`), not once per row.
TEXT_COLUMNS = (
    s.DEVICE_ID,
    s.DEVICE_NAME,
    s.ACTION_TYPE,
    s.REMOTE_IP,
    s.REMOTE_URL,
    s.ADDITIONAL_FIELDS,
)
# The reject rules judged on those texts; every other rule is judged per row, here.
TEXT_RULES = ("null_DeviceId", "bad_AdditionalFields")
MASK = "_mask"  # bit i set: the row breaks s.REJECT_REASONS[i]
# What the input profile counts of each row: its partition's day, and whether it strays from
# its partition's hour.
PART_DAY = "_part_day"
OUTSIDE_HOUR = "_outside_hour"


def normalise(raw: pl.LazyFrame, params: LinkParams, categories: pl.Categories) -> pl.LazyFrame:
    """The narrow rows the link core reads: numbers and times typed to the contract, the text
    columns (`TEXT_COLUMNS`) as they were read but as codes of `categories`, and `_mask` with
    the rules broken among those judged per row (every rule but `TEXT_RULES`).

    The text is not cleaned here: blanks, `-` addresses and the like are judged on the distinct
    values (`classify`), which are a few thousand where the rows are millions.
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

    def bad_port(name: str) -> pl.Expr:
        return unparsed(name) | ~pl.col(name).cast(pl.Int64).is_between(0, 65535).fill_null(True)

    ts = pl.col(s.TIMESTAMP)
    skew = pl.duration(milliseconds=params.clock_skew_ms)
    checks = {
        "bad_Timestamp": unparsed(s.TIMESTAMP),
        "null_Timestamp": ts.is_null(),
        "bad_ReportId": unparsed(s.REPORT_ID),
        "null_ReportId": pl.col(s.REPORT_ID).is_null(),
        "bad_LocalPort": bad_port(s.LOCAL_PORT),
        "bad_RemotePort": bad_port(s.REMOTE_PORT),
        "bad_InitiatingProcessId": unparsed(s.PROCESS_ID),
        "bad_InitiatingProcessCreationTime": unparsed(s.PROCESS_CREATION),
        "Timestamp_outside_partition": (ts < pl.col(PART_START) - skew)
        | (ts >= pl.col(PART_END) + skew),
    }
    assert set(checks) | set(TEXT_RULES) == set(s.REJECT_REASONS) - {"duplicate_key"}
    code = pl.Categorical(categories)
    return raw.select(
        FILE,
        ROW,
        ts,
        pl.col(s.REPORT_ID).cast(pl.Int64),
        *ports(),
        pl.col(s.PROCESS_ID).cast(pl.Int64),
        pl.col(s.PROCESS_CREATION),
        *[pl.col(c).cast(pl.String).cast(code) for c in TEXT_COLUMNS],
        reject_mask(checks).alias(MASK),
        utc_date(pl.col(PART_START)).alias(PART_DAY),
        ((ts < pl.col(PART_START)) | (ts >= pl.col(PART_END))).alias(OUTSIDE_HOUR),
    )


def reject_mask(checks: dict[str, pl.Expr]) -> pl.Expr:
    """The rules a row breaks as one bit mask: bit i for `s.REJECT_REASONS[i]`."""
    return pl.sum_horizontal(
        [
            cond.fill_null(False).cast(pl.UInt16) * (1 << s.REJECT_REASONS.index(name))
            for name, cond in checks.items()
        ]
    )


def first_reason(mask: pl.Expr) -> pl.Expr:
    """The first broken rule, as an Enum: the lowest set bit of the mask, looked up. A chain of
    when/then branches over every row costs more than the checks themselves."""
    first = pl.when(mask > 0).then(mask.bitwise_trailing_zeros())
    return pl.lit(pl.Series(s.REJECT_REASONS, dtype=REASON)).gather(first)


_DAY_US = 86_400_000_000


def utc_date(ts: pl.Expr) -> pl.Expr:
    """The UTC date of a UTC timestamp, from its microseconds: `dt.date()` goes through the
    time zone, which costs ten times as much on millions of rows."""
    return (ts.dt.epoch("us") // _DAY_US).cast(pl.Int32).cast(pl.Date)


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


def suspect_fields() -> pl.Expr:
    """The JSON of inspection rows where no destination field was found, else null: only these
    go through the JSON parser."""
    is_inspection = pl.col(s.ACTION_TYPE).is_in([s.HTTP_INSPECTED, s.SSL_INSPECTED])
    found = pl.col(AF_HOST).is_not_null() | pl.col(AF_URI).is_not_null()
    found = found | pl.col(AF_SERVER_NAME).is_not_null()
    return pl.when(is_inspection & ~found).then(pl.col(s.ADDITIONAL_FIELDS)).alias(_SUSPECT)


def unparseable_evidence_fields() -> pl.Expr:
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
