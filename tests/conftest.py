"""Shared fixtures: the engine parameter and a runner that builds a day from inline rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest

from proxylink.jobs.config import load_config
from proxylink.jobs.engines.spark_session import SparkSettings, build_session
from proxylink.jobs.nightly.run import RunReport, run_day
from tests.helpers import PROXY, PROXY_PORT, frame, write_lake

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DAY = date(2026, 11, 1)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The one Spark session of the test run: local[2], UTC (the session builder sets it), four
    shuffle partitions, UI off. Started on first use, so polars-only runs never start a JVM."""
    settings = SparkSettings(
        # Two cores, and a failed task is retried once, as on a cluster (plain local[2] never
        # retries): the fault tests rely on it.
        master="local[2,2]",
        app_name="proxylink-tests",
        options={
            "spark.sql.shuffle.partitions": "4",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
        },
    )
    # No skip: Java 17 is part of the set-up, and its absence must fail the suite loudly.
    session = build_session(settings)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(params=["polars", "spark"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every engine must pass the same behavioural tests. The Spark runner joins the session's
    one Spark session (started here on first use), as a run in this process would."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    return str(request.param)


Built = tuple[pl.DataFrame, RunReport]


@pytest.fixture
def build(tmp_path: Path, engine: str) -> Callable[..., Built]:
    """Write rows as a lake, run day D, return the published curated rows and the report."""

    def _build(
        rows: list[dict[str, Any]] | pl.DataFrame,
        day: date = DAY,
        proxies: tuple[str, ...] = (f"{PROXY}:{PROXY_PORT}",),
        tolerance: float = 5.0,
        curated: Path | None = None,
    ) -> Built:
        df = rows if isinstance(rows, pl.DataFrame) else frame(rows)
        lake = tmp_path / "lake"
        if not lake.exists():
            write_lake(lake, df)
        out = curated or tmp_path / "curated"
        config = load_config(
            None,
            {
                "engine": engine,
                "events": str(lake / "DeviceNetworkEvents"),
                "curated": str(out),
                "proxies": list(proxies),
                "link": {"tolerance_seconds": tolerance},
            },
        )
        report = run_day(config, day, force=True)
        table = pl.read_delta(str(out / "connection_success"))
        table = table.filter(pl.col("date") == day)
        return table.sort("Timestamp", "ReportId"), report

    return _build
