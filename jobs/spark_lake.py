"""Reading the lake into Spark, and writing Spark's output files for publishing.

The polars reader (jobs/lake.py) stays the judge of the input: it checks every footer (a corrupt
file is named or skipped, a missing column named) and its lazy frame's schema is the schema both
engines build on: the same columns, in the same order, with the same dtypes (`_raw_` shadows of
text that must be parsed included). Resolving that schema reads footers only.

Spark then reads the files, one read per group of files whose Parquet schema is identical, so
files that disagree on types are harmonised each on their own terms, as in polars:

- `_row` is `_metadata.row_index`, the row's position in its file as Parquet stores it, which is
  what polars' `with_row_index` counts. It does not depend on how Spark splits the file, unlike
  `monotonically_increasing_id` or a `row_number()` over an unordered read.
- `_file` is the file's place in the planned list. Within a group it is looked up from
  `_metadata.file_path`, compared as the URI path that Spark reports for the group's files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse

import polars as pl
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import lake, publish
from jobs.plan import PlannedFile
from transforms import schema as s
from transforms.polars_engine.normalise import FILE, PART_END, PART_START, ROW
from transforms.polars_engine.normalise import harmonise as polars_harmonise
from transforms.spark_engine.normalise import epoch_us, harmonise, spark_type
from transforms.spark_engine.text import polars_text

T_ = TypeVar("T_")
_INTERNAL = (FILE, ROW, PART_START, PART_END)
_SCHEME = r"^[A-Za-z][A-Za-z0-9+.\-]*:(//[^/]*)?"


@dataclass
class SparkLakeScan:
    """The raw rows of the planned files, and the files that were skipped as corrupt."""

    frame: DataFrame
    files: list[PlannedFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [str(f.path) for f in self.files]


def scan_lake(spark: SparkSession, planned: list[PlannedFile], on_corrupt: str) -> SparkLakeScan:
    """Raw rows with `_file`, `_row`, `_part_start`, `_part_end`, as jobs.lake.scan_lake has
    them; raises the same InputError for a corrupt file (fail mode) or a missing column."""
    checked = lake.scan_lake(planned, on_corrupt)
    target = checked.frame.collect_schema()
    sources = [pl.scan_parquet(f.path, hive_partitioning=False) for f in checked.files]
    raw_schemas = [lf.collect_schema() for lf in sources]
    mixed = _mixed_extras([polars_harmonise(lf).collect_schema() for lf in sources])
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, sch in enumerate(raw_schemas):
        groups.setdefault(tuple((n, str(d)) for n, d in sch.items()), []).append(i)
    frames = []
    for members in groups.values():
        for frame in _read_group(spark, checked.files, members):
            source = raw_schemas[members[0]]
            harmonised = harmonise(frame, dict(source.items()))
            frames.append(_align(harmonised, target, mixed, checked.files))
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return SparkLakeScan(union, checked.files, checked.skipped)


def _mixed_extras(schemas: list[pl.Schema]) -> set[str]:
    """Optional columns whose harmonised dtype differs between files: polars makes them text."""
    extras: dict[str, set[pl.DataType]] = {}
    for sch in schemas:
        for name, dtype in sch.items():
            if name not in s.REQUIRED_COLUMNS and not name.startswith("_"):
                extras.setdefault(name, set()).add(dtype)
    return {n for n, types in extras.items() if len(types) > 1}


def _read_group(
    spark: SparkSession, files: list[PlannedFile], members: list[int]
) -> list[DataFrame]:
    """One read for files with one schema, with `_row` and `_file`; per file if the paths that
    Spark reports cannot be matched to the planned ones."""
    paths = [str(files[i].path) for i in members]
    frame = spark.read.parquet(*paths)
    row = F.col("_metadata.row_index").alias(ROW)
    if len(members) == 1:
        return [frame.select("*", row, F.lit(members[0]).alias(FILE))]
    by_path = {os.path.abspath(files[i].path): i for i in members}
    keys: dict[str, int] = {}
    for uri in frame.inputFiles():
        path = urlparse(uri).path
        if unquote(path) in by_path:
            keys[path] = by_path[unquote(path)]
    if sorted(keys.values()) != sorted(members):
        return [f for i in members for f in _read_group(spark, files, [i])]
    spark_path = F.regexp_replace(F.col("_metadata.file_path"), _SCHEME, "")
    index = F.create_map(*[F.lit(x) for kv in keys.items() for x in kv])
    return [
        frame.select("*", F.col("_metadata.row_index").alias(ROW), index[spark_path].alias(FILE))
    ]


def _align(
    frame: DataFrame, target: pl.Schema, mixed: set[str], files: list[PlannedFile]
) -> DataFrame:
    """The columns of the polars lake frame, in its order and dtypes; absent ones null."""
    types = {f.name: f.dataType for f in frame.schema.fields}
    starts = F.array(*[F.lit(epoch_us(f.start)) for f in files])
    ends = F.array(*[F.lit(epoch_us(f.end)) for f in files])
    at = F.col(FILE) + 1
    columns: list[Column] = []
    for name, dtype in target.items():
        if name == FILE:
            columns.append(F.col(FILE).cast("int").alias(FILE))
        elif name == ROW:
            columns.append(F.col(ROW).cast("bigint").alias(ROW))
        elif name == PART_START:
            columns.append(F.timestamp_micros(F.element_at(starts, at)).alias(PART_START))
        elif name == PART_END:
            columns.append(F.timestamp_micros(F.element_at(ends, at)).alias(PART_END))
        else:
            want = spark_type(dtype)
            if name not in types:
                columns.append(F.lit(None).cast(want).alias(name))
                continue
            value = F.col(f"`{name}`")
            if name in mixed:
                value = polars_text(value, types[name])
            elif types[name] != want:
                value = value.cast(want)
            columns.append(value.alias(name))
    return frame.select(*columns)


def guarded(files: list[PlannedFile], action: Callable[[], T_]) -> T_:
    """Run `action`; if Spark fails reading a file mid-way, say which file (as jobs.lake does)."""
    try:
        return action()
    except (PySparkException, OSError) as exc:
        culprit = lake.locate_unreadable(files)
        if culprit is None:
            raise
        raise lake.UnreadableFile(*culprit) from exc


def write_parquet(frame: DataFrame, table: Path, day: date, run_id: str, name: str) -> list[Path]:
    """Write `frame` (without the `date` column) as Parquet files of partition D of `table`,
    named as publish.new_data_path names them, ready for publish.commit_files.

    Spark writes into a hidden folder first; its part files are then moved next to the
    partition's other files and the folder is removed. Timestamps are written as microseconds
    (Spark's default INT96 is not what Delta readers expect).
    """
    spark = frame.sparkSession
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    folder = publish.new_data_path(table, day, run_id).parent
    staging = folder / f".spark-{run_id}-{name}"
    if s.PARTITION_DATE in frame.columns:
        frame = frame.drop(s.PARTITION_DATE)
    frame.write.mode("overwrite").option("compression", "zstd").parquet(str(staging))
    paths: list[Path] = []
    for i, part in enumerate(sorted(staging.glob("part-*.parquet"))):
        target = publish.new_data_path(table, day, run_id, part=i)
        part.replace(target)
        paths.append(target)
    shutil.rmtree(staging, ignore_errors=True)
    return paths
