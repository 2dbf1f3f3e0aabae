"""Publishing: partition D is replaced in one commit, reruns are idempotent, other days stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

from proxylink.transforms import schema as s
from tests.helpers import leg, np_row

Build = Callable[..., Any]
NEXT_DAY_MS = 24 * 3600 * 1000


def test_rerun_replaces_partition_with_identical_rows(build: Build, tmp_path: Path) -> None:
    rows = [leg(0, 50001), np_row(10, "a.com", 50001), leg(100, 50002)]
    first, r1 = build(rows)
    second, r2 = build(rows)
    assert first.drop("date").equals(second.drop("date"))
    table = DeltaTable(str(tmp_path / "curated" / "connection_success"))
    assert table.version() == 1
    assert len(table.file_uris()) == 1, "the rerun's file replaced the first run's"
    assert r1.counts == r2.counts
    history = table.history()
    assert history[0]["operationParameters"]["mode"] == "Overwrite"


def test_building_one_day_leaves_other_days_untouched(build: Build, tmp_path: Path) -> None:
    rows = [leg(0, 50001), leg(NEXT_DAY_MS, 50002)]
    build(rows)
    build(rows, day=date(2026, 11, 2))
    table = pl.read_delta(str(tmp_path / "curated" / "connection_success"))
    assert table.group_by("date").len().sort("date").rows() == [
        (date(2026, 11, 1), 1),
        (date(2026, 11, 2), 1),
    ]
    build(rows)  # rebuild day 1
    table = pl.read_delta(str(tmp_path / "curated" / "connection_success"))
    assert table.height == 2


def test_curated_schema_is_the_contract(build: Build) -> None:
    df, _ = build([leg(0, 50001), np_row(10, "a.com", 50001)])
    schema = df.schema
    for col, dtype in {
        s.TIMESTAMP: pl.Datetime("us", "UTC"),
        s.REMOTE_PORT: pl.Int32,
        s.LOCAL_PORT: pl.Int32,
        s.REPORT_ID: pl.Int64,
        s.IS_PROXIED: pl.Boolean,
        s.PROXY_PORT: pl.Int32,
        s.TARGET_PORT: pl.Int32,
        s.LINK_DELTA_MS: pl.Int64,
        s.EVIDENCE_REPORT_ID: pl.Int64,
        "date": pl.Date,
    }.items():
        assert schema[col] == dtype, col
    assert "InitiatingProcessFileName" in schema, "optional columns are carried through"
    assert not [c for c in schema if c.startswith("_") or c == "hour"]
