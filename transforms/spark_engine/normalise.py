"""Coerce raw rows to the input contract and name what breaks it: the polars rules, in Spark.

See transforms/polars_engine/normalise.py for the rules; this module keeps its names and order.
Every row keeps its place (`_file`, `_row`), and a row that breaks the contract gets the first
broken rule in `_reject` instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import polars as pl
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from transforms import schema as s
from transforms.params import LinkParams
from transforms.polars_engine.normalise import (
    AF_HOST,
    AF_METHOD,
    AF_SERVER_NAME,
    AF_URI,
    CONTRACT_DTYPES,
    FILE,
    HOME_DAY,
    PART_END,
    PART_START,
    REJECT,
    ROW,
    raw_name,
)
from transforms.spark_engine.text import (
    blank_to_null,
    extract,
    is_blank,
    json_text,
    parse_long,
    parse_timestamp,
    polars_text,
    strip,
)

__all__ = [
    "FILE",
    "HOME_DAY",
    "PART_END",
    "PART_START",
    "REJECT",
    "ROW",
    "coerce",
    "harmonise",
    "normalise",
    "spark_type",
]

DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def spark_type(dtype: pl.DataType) -> T.DataType:
    """The Spark type that holds a polars dtype (Spark has no unsigned integers: widened)."""
    simple: dict[type[pl.DataType], T.DataType] = {
        pl.String: T.StringType(),
        pl.Boolean: T.BooleanType(),
        pl.Int8: T.ByteType(),
        pl.Int16: T.ShortType(),
        pl.Int32: T.IntegerType(),
        pl.Int64: T.LongType(),
        pl.UInt8: T.ShortType(),
        pl.UInt16: T.IntegerType(),
        pl.UInt32: T.LongType(),
        pl.UInt64: T.DecimalType(20, 0),
        pl.Float32: T.FloatType(),
        pl.Float64: T.DoubleType(),
        pl.Date: T.DateType(),
        pl.Binary: T.BinaryType(),
        pl.Null: T.StringType(),
    }
    for kind, spark in simple.items():
        if isinstance(dtype, kind):
            return spark
    if isinstance(dtype, pl.Datetime):
        return T.TimestampType() if dtype.time_zone is not None else T.TimestampNTZType()
    if isinstance(dtype, pl.Decimal):
        return T.DecimalType(dtype.precision or 38, dtype.scale or 0)
    raise TypeError(f"no Spark type for polars dtype {dtype}")


def _timestamp(column: Column, spark: T.DataType) -> Column:
    """A Parquet timestamp as a UTC instant: naive values are UTC; nanoseconds (read as a long
    with `spark.sql.legacy.parquet.nanosAsLong`) are truncated to microseconds."""
    if isinstance(spark, T.LongType):
        whole = (column - F.pmod(column, F.lit(1000))).cast("decimal(20,0)")
        return F.timestamp_micros((whole / 1000).cast("bigint"))
    return column.cast("timestamp")


def harmonise(frame: DataFrame, source: Mapping[str, pl.DataType]) -> DataFrame:
    """polars `harmonise`, decided on the file's polars dtypes (`source`) so that both engines
    take the same decision for the same file: objects become JSON text, contract columns get
    their contract dtype, and text that must be parsed keeps its original in `_raw_<column>`."""
    spark_types = {f.name: f.dataType for f in frame.schema.fields}
    exprs: dict[str, Column] = {}
    for name, dtype in source.items():
        column, spark = F.col(f"`{name}`"), spark_types[name]
        want = CONTRACT_DTYPES.get(name)
        if isinstance(dtype, pl.Struct | pl.List | pl.Array):
            exprs[name] = json_text(column, spark)
            continue
        if isinstance(dtype, pl.Datetime) and isinstance(spark, T.LongType):
            column = _timestamp(column, spark)  # nanoseconds read as a long
            spark = T.TimestampType()
            exprs[name] = column
        if want is None or dtype == want:
            continue
        if isinstance(want, pl.Datetime) and isinstance(dtype, pl.Datetime):
            exprs[name] = _timestamp(column, spark)
        elif want.is_integer() and dtype.is_integer():
            exprs[name] = column.cast("bigint")
        elif want == pl.String:
            exprs[name] = polars_text(column, spark)
        else:
            text = polars_text(column, spark)
            exprs[raw_name(name)] = text
            value = parse_timestamp(strip(text)) if isinstance(want, pl.Datetime) else None
            exprs[name] = value if value is not None else parse_long(strip(text))
    return frame.withColumns(exprs) if exprs else frame


def coerce(frame: DataFrame) -> DataFrame:
    """The contract columns with contract types: blanks are null, ports outside 0..65535 null."""
    typed: dict[str, Column] = {}
    for name in s.STRING_COLUMNS:
        expr = blank_to_null(F.col(name))
        if name in (s.REMOTE_IP, s.LOCAL_IP):
            expr = F.when(expr.rlike(r"(?U)^\s*-\s*\z"), F.lit(None).cast("string")).otherwise(expr)
        typed[name] = expr
    for name in s.PORT_COLUMNS:
        value = F.col(name).cast("bigint")
        typed[name] = F.when(value.between(0, 65535), value).cast("int")
    typed[s.REPORT_ID] = F.col(s.REPORT_ID).cast("bigint")
    typed[s.PROCESS_ID] = F.col(s.PROCESS_ID).cast("bigint")
    return frame.withColumns(typed)


def micros(column: str | Column) -> Column:
    """A timestamp as microseconds since the epoch, whatever the session time zone."""
    return F.unix_micros(F.col(column) if isinstance(column, str) else column)


def epoch_us(instant: datetime) -> int:
    """A timezone-aware instant as exact microseconds since the epoch."""
    return (instant - _EPOCH) // timedelta(microseconds=1)


def utc_date(us: Column) -> Column:
    """The UTC date of a microsecond instant (floor division, also before 1970)."""
    days = (us - F.pmod(us, F.lit(DAY_US))) / DAY_US
    return F.date_from_unix_date(days.cast("int"))


def normalise(raw: DataFrame, params: LinkParams) -> DataFrame:
    """Typed contract columns plus `_reject` (first broken rule, or null) and `_home_day`."""
    columns = set(raw.columns)
    missing = [c for c in s.REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"required column(s) missing: {', '.join(missing)}")

    def unparsed(name: str) -> Column:
        if raw_name(name) not in columns:
            return F.lit(False)
        text = strip(F.col(raw_name(name)))
        return text.isNotNull() & (text != "") & F.col(name).isNull()

    bad_port = {
        name: unparsed(name)
        | ~F.coalesce(F.col(name).cast("bigint").between(0, 65535), F.lit(True))
        for name in s.PORT_COLUMNS
    }
    ts = micros(s.TIMESTAMP)
    skew = params.clock_skew_ms * 1000
    checks: list[tuple[str, Column]] = [
        ("null_DeviceId", F.col(s.DEVICE_ID).isNull()),
        ("bad_Timestamp", unparsed(s.TIMESTAMP)),
        ("null_Timestamp", F.col(s.TIMESTAMP).isNull()),
        ("bad_ReportId", unparsed(s.REPORT_ID)),
        ("null_ReportId", F.col(s.REPORT_ID).isNull()),
        ("bad_LocalPort", F.col("_bad_LocalPort")),
        ("bad_RemotePort", F.col("_bad_RemotePort")),
        ("bad_InitiatingProcessId", unparsed(s.PROCESS_ID)),
        ("bad_InitiatingProcessCreationTime", unparsed(s.PROCESS_CREATION)),
        ("bad_AdditionalFields", _unparseable_evidence_fields()),
        (
            "Timestamp_outside_partition",
            (ts < micros(PART_START) - skew) | (ts >= micros(PART_END) + skew),
        ),
    ]
    assert [label for label, _ in checks] == list(s.REJECT_REASONS[: len(checks)])
    reason: Column = F.lit(None).cast("string")
    for label, cond in reversed(checks):
        reason = F.when(cond, F.lit(label)).otherwise(reason)
    home = F.when(F.col(REJECT).isNull(), utc_date(ts)).otherwise(utc_date(micros(PART_START)))
    flags = [f"_bad_{n}" for n in bad_port]
    return (
        raw.withColumns({f"_bad_{n}": e for n, e in bad_port.items()})
        .transform(coerce)
        .withColumns(evidence_fields())
        .withColumn(REJECT, reason)
        .withColumn(HOME_DAY, home)
        .drop(*flags)
    )


def _field(text: Column, key: str) -> Column:
    return extract(text, rf'(?U)"{key}"\s*:\s*"([^"]*)"', 1)


def evidence_fields() -> dict[str, Column]:
    """The destination fields of inspection rows, read only where the row type has them."""
    action = F.col(s.ACTION_TYPE)
    http = F.when(action == s.HTTP_INSPECTED, F.col(s.ADDITIONAL_FIELDS))
    ssl = F.when(action == s.SSL_INSPECTED, F.col(s.ADDITIONAL_FIELDS))
    return {
        AF_METHOD: _field(http, "method"),
        AF_HOST: _field(http, "host"),
        AF_URI: _field(http, "uri"),
        AF_SERVER_NAME: _field(ssl, "server_name"),
    }


def _json_is_valid(text: Column) -> Column:
    """polars `json_path_match("$")` is not null: the text is one JSON value, and not `null`.

    Spark's parser stops after the first value and takes numbers beyond the double range, so the
    text must also end where its value ends: an object with `}`, an array with `]`, a string
    with `"`, and a bare scalar must be a finite number or `true`/`false` as a whole. Left over:
    `{}}`-like texts whose first value closes early, and out-of-range numbers inside objects,
    which serde_json rejects and Spark accepts (needs `spark.sql.variant.allowDuplicateKeys`
    for objects that repeat a key, which serde_json accepts).
    """
    body = F.regexp_replace(text, r"^[ \t\n\r]+|[ \t\n\r]+\z", "")
    parsed = F.try_parse_json(text)
    first = F.substring(body, 1, 1)
    number = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\z"
    finite = ~F.isnan(body.try_cast("double")) & (F.abs(body.try_cast("double")) < float("inf"))
    shape = (
        F.when(first == "{", body.endswith("}"))
        .when(first == "[", body.endswith("]"))
        .when(first == '"', body.endswith('"') & (F.length(body) > 1))
        .otherwise((body.rlike(number) & finite) | body.isin("true", "false"))
    )
    return parsed.isNotNull() & ~F.is_variant_null(parsed) & shape


def _unparseable_evidence_fields() -> Column:
    """Inspection rows are read for their destination, so their JSON must parse."""
    is_inspection = F.col(s.ACTION_TYPE).isin(s.HTTP_INSPECTED, s.SSL_INSPECTED)
    found = F.col(AF_HOST).isNotNull() | F.col(AF_URI).isNotNull()
    found = found | F.col(AF_SERVER_NAME).isNotNull()
    suspect = F.when(is_inspection & ~found, F.col(s.ADDITIONAL_FIELDS))
    return suspect.isNotNull() & ~is_blank(suspect) & ~_json_is_valid(suspect)
