"""String rules of the polars engine, spelled for Spark.

polars evaluates regular expressions with Rust's `regex` crate and parses text with chrono and
Rust's number parsers; Spark uses `java.util.regex` and its own casts. The helpers here give
Spark the polars meaning:

- `$` in Rust is the end of the text; in Java it also matches before a final line break, so the
  patterns here end with `\\z`;
- `\\s` in Rust is Unicode white space; Java needs `(?U)` for that;
- `.` in Rust stops only at `\\n`; Java stops at every line terminator unless `(?d)` is set;
- a polars extract gives null where the pattern does not match, Spark's gives "";
- polars parses integers strictly and timestamps with chrono, whose accepted forms are spelled
  out below as one regular expression per format.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T


def strip(text: Column) -> Column:
    """polars `str.strip_chars()`: Unicode white space off both ends."""
    return F.regexp_replace(text, r"(?U)^\s+|\s+\z", "")


def is_blank(text: Column) -> Column:
    """polars `str.contains(r"^\\s*$")`."""
    return text.rlike(r"(?U)^\s*\z")


def blank_to_null(text: Column) -> Column:
    return F.when(is_blank(text), F.lit(None).cast("string")).otherwise(text)


def extract(text: Column, pattern: str, group: int = 1) -> Column:
    """polars `str.extract`: the group of the first match, null where nothing matches."""
    return F.when(text.rlike(pattern), F.regexp_extract(text, pattern, group))


_INT = r"^[+-]?[0-9]+\z"
_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\z"
_I64_LO, _I64_HI = -9.223372036854775808e18, 9.223372036854775808e18


def parse_long(text: Column) -> Column:
    """polars `_parse` for integers: an integer, else a whole float within Int64, else null.

    `text` is already stripped. The guards keep Spark's casts from accepting what Rust's
    parsers do not (`1d`, `0x1p3`, surrounding blanks) and keep 2**63 out of range.
    """
    as_int = F.when(text.rlike(_INT), text.try_cast("bigint"))
    number = F.when(text.rlike(_FLOAT), text.try_cast("double"))
    whole = (number == F.rint(number)) & (number >= _I64_LO) & (number < _I64_HI)
    return F.coalesce(as_int, F.when(whole, number.cast("bigint")))


# chrono's reading of the four formats of the polars engine (stripped text):
#   %Y-%m-%dT%H:%M:%S%.fZ | %Y-%m-%dT%H:%M:%S%.f%z | %Y-%m-%dT%H:%M:%S%.f | %Y-%m-%d %H:%M:%S%.f
# %Y takes up to four digits and a sign, %m %d %H %M %S one or two digits, %.f an optional dot
# and digits (nanoseconds, truncated), %z `±hh:mm` or `±hhmm` after optional blanks; a blank in
# the format matches any run of blanks, none included. A second of 60 is a leap second.
_DATE = r"^([+-]?[0-9]{1,4})-([0-9]{1,2})-([0-9]{1,2})"
_TIME = r"([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(\.[0-9]+)?"
_TS_T = _DATE + "T" + _TIME + r"(Z|(?U)\s*([+-])([0-9]{2}):?([0-9]{2}))?\z"
_TS_SPACE = _DATE + r"(?U)\s*" + _TIME + r"\z"


def parse_timestamp(text: Column) -> Column:
    """polars `str.to_datetime` tried with the engine's formats in turn, to UTC microseconds."""
    t_form = text.rlike(_TS_T)
    space_form = ~t_form & text.rlike(_TS_SPACE)

    def part(i: int, j: int) -> Column:
        return F.when(t_form, F.regexp_extract(text, _TS_T, i)).when(
            space_form, F.regexp_extract(text, _TS_SPACE, j)
        )

    def num(i: int, j: int) -> Column:
        return part(i, j).try_cast("int")

    year, month, day = num(1, 1), num(2, 2), num(3, 3)
    hour, minute, second = num(4, 4), num(5, 5), num(6, 6)
    fraction = part(7, 7)
    micros = F.when(
        fraction != "", F.rpad(F.substring(fraction, 2, 6), 6, "0").try_cast("bigint")
    ).otherwise(F.lit(0))
    sign = F.when(t_form, F.regexp_extract(text, _TS_T, 9))
    off_h = F.when(sign != "", F.regexp_extract(text, _TS_T, 10).try_cast("bigint"))
    off_m = F.when(sign != "", F.regexp_extract(text, _TS_T, 11).try_cast("int"))
    offset = F.coalesce((off_h * 60 + off_m) * 60_000_000, F.lit(0))
    offset = F.when(sign == "-", -offset).otherwise(offset)
    valid = (hour <= 23) & (minute <= 59) & (second <= 60)
    valid = valid & (off_h.isNull() | ((off_h <= 23) & (off_m <= 59)))
    midnight = F.try_make_timestamp(year, month, day, F.lit(0), F.lit(0), F.lit(0), F.lit("UTC"))
    clock = ((hour.cast("bigint") * 60 + minute) * 60 + second) * 1_000_000 + micros
    value = F.unix_micros(midnight) + clock - offset
    return F.when(valid & midnight.isNotNull(), F.timestamp_micros(value))


def polars_text(column: Column, dtype: T.DataType) -> Column:
    """polars `cast(pl.String)` of a value of a harmonised raw column.

    Timestamps need the session time zone to be UTC (the engine checks it). Floating point values
    use Java's spelling (`1.0E20`), which differs from polars' (`1e+20`) for very large or small
    magnitudes; the input contract has no floating point column.
    """
    if isinstance(dtype, T.StringType):
        return column
    if isinstance(dtype, T.TimestampType):
        return F.concat(F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSSSSS"), F.lit("+00:00"))
    if isinstance(dtype, T.TimestampNTZType):
        return F.date_format(column, "yyyy-MM-dd HH:mm:ss.SSSSSS")
    if isinstance(dtype, T.DoubleType | T.FloatType):
        whole = (column == F.rint(column)) & (F.abs(column) < 1e16)
        return (
            F.when(F.isnan(column), F.lit("NaN"))
            .when(whole, F.format_string("%.1f", column))
            .otherwise(column.cast("string"))
        )
    return column.cast("string")


def json_text(column: Column, dtype: T.DataType) -> Column:
    """polars `json_encode` of a struct or list column: a null value is the text `null`; Spark
    shows maps as objects, polars (which reads a Parquet map as a list of key/value structs) as
    a list."""
    if isinstance(dtype, T.MapType):
        column = F.map_entries(column)
    return F.coalesce(F.to_json(column, {"ignoreNullFields": "false"}), F.lit("null"))
