"""Coerce raw DeviceNetworkEvents rows to the input contract and name what breaks it.

Real exports mix nulls and empty strings, store ports as strings now and then and sometimes
carry `AdditionalFields` as an object. Every row keeps its place (`_file`, `_row`): a row that
breaks the contract gets a reason in `_reject` instead of being dropped, so the counts reconcile.
"""

from __future__ import annotations

import polars as pl

from transforms import schema as s
from transforms.params import LinkParams

# Internal bookkeeping columns that the job adds to every raw row.
FILE: str = "_file"
ROW: str = "_row"
PART_START: str = "_part_start"
PART_END: str = "_part_end"
REJECT: str = "_reject"
HOME_DAY: str = "_home_day"
ROW_HASH: str = "_hash"
INTERNAL = (FILE, ROW, PART_START, PART_END)

UTC_US = pl.Datetime("us", "UTC")
CONTRACT_DTYPES: dict[str, pl.DataType] = {
    **{c: pl.String() for c in s.STRING_COLUMNS},
    **{c: pl.Int32() for c in s.PORT_COLUMNS},
    **{c: pl.Int64() for c in s.LONG_COLUMNS},
    **{c: UTC_US for c in s.TIMESTAMP_COLUMNS},
}

_TS_FORMATS = ("%Y-%m-%dT%H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f")


def harmonise(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Give each contract column its contract dtype or String, so files of one lake concatenate.

    Objects (structs, lists) become JSON text; other mismatches become text and are parsed,
    row by row, in `normalise`.
    """
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        want = CONTRACT_DTYPES.get(name)
        if want is None:
            if isinstance(dtype, pl.Struct | pl.List):
                exprs.append(_to_json(name, dtype))
            continue
        if dtype == want:
            continue
        if isinstance(dtype, pl.Struct | pl.List):
            exprs.append(_to_json(name, dtype))
        elif isinstance(want, pl.Datetime) and isinstance(dtype, pl.Datetime):
            exprs.append(_as_utc(pl.col(name), dtype))
        elif isinstance(want, pl.Int32 | pl.Int64) and dtype.is_integer():
            exprs.append(pl.col(name).cast(pl.Int64))
        else:
            exprs.append(pl.col(name).cast(pl.String))
    return frame.with_columns(exprs) if exprs else frame


def _to_json(name: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Struct):
        return pl.col(name).struct.json_encode()
    return pl.struct(pl.col(name).alias("v")).struct.json_encode().str.slice(5, None).str.head(-1)


def _as_utc(expr: pl.Expr, dtype: pl.Datetime) -> pl.Expr:
    if dtype.time_zone is None:
        expr = expr.dt.replace_time_zone("UTC")
    return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _blank_to_null(name: str) -> pl.Expr:
    text = pl.col(name).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(pl.col(name))


def _parse_int(name: str, dtype: pl.DataType, target: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """Parsed column and a flag for a present value that is not an integer."""
    if dtype == pl.String:
        raw = pl.col(name).str.strip_chars()
        raw = pl.when(raw == "").then(None).otherwise(raw)
        parsed = raw.cast(pl.Int64, strict=False)
        bad = raw.is_not_null() & parsed.is_null()
    else:
        parsed = pl.col(name).cast(pl.Int64, strict=False)
        bad = pl.lit(False)
    if target == pl.Int32:
        bad = bad | (parsed.is_not_null() & ((parsed < 0) | (parsed > 65535)))
        parsed = pl.when((parsed >= 0) & (parsed <= 65535)).then(parsed)
    return parsed.cast(target).alias(name), bad


def _parse_ts(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    if isinstance(dtype, pl.Datetime):
        return _as_utc(pl.col(name), dtype).alias(name), pl.lit(False)
    if dtype == pl.String:
        raw = pl.col(name).str.strip_chars()
        raw = pl.when(raw == "").then(None).otherwise(raw)
        parsed = pl.coalesce(
            [
                raw.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
                for f in _TS_FORMATS
            ]
        )
        return parsed.alias(name), raw.is_not_null() & parsed.is_null()
    if dtype == pl.Date:
        return pl.col(name).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name), pl.lit(
            False
        )
    return pl.lit(None, UTC_US).alias(name), pl.col(name).is_not_null()


def normalise(raw: pl.LazyFrame, params: LinkParams) -> pl.LazyFrame:
    """Typed contract columns plus `_reject` (first broken rule, or null) and `_home_day`.

    A row's home day is the UTC date of its Timestamp; a rejected row belongs to the day of
    its partition, so each row is counted by exactly one day's run.
    """
    schema = raw.collect_schema()
    missing = [c for c in s.REQUIRED_COLUMNS if c not in schema]
    if missing:
        raise ValueError(f"required column(s) missing: {', '.join(missing)}")

    typed: list[pl.Expr] = []
    bad_flags: dict[str, pl.Expr] = {}
    for name in s.STRING_COLUMNS:
        expr = _blank_to_null(name)
        if name in (s.REMOTE_IP, s.LOCAL_IP):
            expr = pl.when(expr.str.strip_chars() == "-").then(None).otherwise(expr)
        typed.append(expr.alias(name))
    for name in (*s.PORT_COLUMNS, *s.LONG_COLUMNS):
        parsed, bad = _parse_int(name, schema[name], CONTRACT_DTYPES[name])
        typed.append(parsed)
        bad_flags[name] = bad
    for name in s.TIMESTAMP_COLUMNS:
        parsed, bad = _parse_ts(name, schema[name])
        typed.append(parsed)
        bad_flags[name] = bad

    flag_cols = [flag.alias(f"_bad_{name}") for name, flag in bad_flags.items()]
    frame = raw.with_columns([*typed, *flag_cols])
    skew = pl.duration(milliseconds=params.clock_skew_ms)
    ts = pl.col(s.TIMESTAMP)
    checks: list[tuple[str, pl.Expr]] = [
        ("null_DeviceId", pl.col(s.DEVICE_ID).is_null()),
        ("bad_Timestamp", pl.col(f"_bad_{s.TIMESTAMP}")),
        ("null_Timestamp", ts.is_null()),
        ("bad_ReportId", pl.col(f"_bad_{s.REPORT_ID}")),
        ("null_ReportId", pl.col(s.REPORT_ID).is_null()),
        ("bad_LocalPort", pl.col(f"_bad_{s.LOCAL_PORT}")),
        ("bad_RemotePort", pl.col(f"_bad_{s.REMOTE_PORT}")),
        ("bad_InitiatingProcessId", pl.col(f"_bad_{s.PROCESS_ID}")),
        ("bad_InitiatingProcessCreationTime", pl.col(f"_bad_{s.PROCESS_CREATION}")),
        ("bad_AdditionalFields", _unparseable_evidence_fields()),
        (
            "Timestamp_outside_partition",
            (ts < pl.col(PART_START) - skew) | (ts >= pl.col(PART_END) + skew),
        ),
    ]
    home = (
        pl.when(pl.col(REJECT).is_null()).then(ts.dt.date()).otherwise(pl.col(PART_START).dt.date())
    )
    return (
        frame.with_columns(_reject_expr(checks))
        .with_columns(home.alias(HOME_DAY))
        .drop([c.meta.output_name() for c in flag_cols])
    )


def _reject_expr(checks: list[tuple[str, pl.Expr]]) -> pl.Expr:
    reason: pl.Expr = pl.lit(None, pl.String)
    for label, cond in reversed(checks):
        reason = pl.when(cond.fill_null(False)).then(pl.lit(label)).otherwise(reason)
    return reason.alias(REJECT)


def _unparseable_evidence_fields() -> pl.Expr:
    """Inspection rows are read for their destination, so their JSON must parse."""
    is_inspection = pl.col(s.ACTION_TYPE).is_in([s.HTTP_INSPECTED, s.SSL_INSPECTED])
    text = pl.col(s.ADDITIONAL_FIELDS)
    present = text.is_not_null() & (text.str.strip_chars() != "")
    return is_inspection & present & text.str.json_path_match("$").is_null()
