"""The expectations gate: every critical expectation blocks publishing, warnings do not.

Each test feeds the publish step staged data with exactly one defect and checks that the run
fails with exit code 1 and that the published table is unchanged. A positive control proves the
suites pass good data, so the failures are the defects' doing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dateutil.parser
import polars as pl
import pytest
from deltalake import DeltaTable

from proxylink.expectations.runner import ValidationReport, gx_run_name, run_identifier
from proxylink.expectations.suites import CHECK_IDS
from proxylink.jobs.cli import main
from proxylink.jobs.config import Config, load_config
from proxylink.jobs.errors import ValidationFailed
from proxylink.jobs.nightly import publish
from proxylink.jobs.nightly.gate import Gate, publish_gated
from proxylink.jobs.nightly.publish import CURATED_TABLE, REJECTS_TABLE
from proxylink.jobs.nightly.run import new_run_id, run_day
from proxylink.transforms import schema as s
from proxylink.transforms.aggregates import DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE, SUMMARY_TABLES
from proxylink.transforms.engine import DayResult
from proxylink.transforms.params import DayWindow
from tests.helpers import frame, http_row, leg, np_row, write_lake

DAY = date(2026, 11, 1)
RUN_TIME = datetime(2026, 12, 3, 12, 54, 59, tzinfo=UTC)


@pytest.fixture
def published(tmp_path: Path) -> tuple[Config, Path]:
    rows = [leg(0, 50001), np_row(10, "a.example.com", 50001), leg(100, 50002)]
    rows += [leg(200, 50003), http_row(220, "b.example.com", 50003)]
    events = write_lake(tmp_path, frame(rows))
    config = load_config(
        None,
        {
            "events": str(events),
            "curated": str(tmp_path / "curated"),
            "proxies": ["10.20.0.5:8080"],
            "expectations": {"connection_success": {"min_link_rate": 0.5}},
        },
    )
    run_day(config, DAY)
    return config, tmp_path / "curated"


Defect = Callable[[pl.DataFrame, dict[str, int], pl.DataFrame], tuple[Any, ...]]


def _stage(
    config: Config,
    curated: pl.DataFrame,
    counts: dict[str, int],
    inputs: pl.DataFrame,
    summaries: dict[str, pl.DataFrame] | None = None,
):
    """Stage the four tables' files as a run would; summary tables default to the published."""
    root = config.curated
    assert root is not None
    table, rejects = root / CURATED_TABLE, root / REJECTS_TABLE
    cpath = publish.new_data_path(table, DAY, "test")
    rpath = publish.new_data_path(rejects, DAY, "test")
    curated.write_parquet(cpath)
    pl.read_delta(str(rejects)).drop("date").head(0).write_parquet(rpath)
    tables = {CURATED_TABLE: (table, [cpath]), REJECTS_TABLE: (rejects, [rpath])}
    summaries = {**_good_summaries(root), **(summaries or {})}
    for name, rows in summaries.items():
        path = publish.new_data_path(root / name, DAY, "test")
        rows.write_parquet(path)
        tables[name] = (root / name, [path])
    manifest = _manifest(root)
    out = DayResult(
        counts=counts,
        reject_reasons={},
        link_stats=manifest["link_stats"],
        input_profile=inputs,
    )
    staged = publish.Staged(tables, DAY)
    return staged, out, [p for _, paths in tables.values() for p in paths]


def _good_summaries(root: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_delta(str(root / name)).drop("date") for name in SUMMARY_TABLES}


def _manifest(root: Path) -> dict[str, Any]:
    path = sorted((root / "_manifests" / f"date={DAY}").glob("*.json"))[0]
    return json.loads(path.read_text())


def _good(config: Config) -> tuple[pl.DataFrame, dict[str, int], pl.DataFrame]:
    root = config.curated
    assert root is not None
    rows = pl.read_delta(str(root / CURATED_TABLE)).drop("date")
    manifest = _manifest(root)
    return rows, dict(manifest["counts"]), pl.DataFrame(manifest["input_profile"])


def _publish(
    config: Config,
    curated: pl.DataFrame,
    counts: dict,
    inputs: pl.DataFrame,
    run_id: str = "test-run",
) -> ValidationReport:
    staged, out, _ = _stage(config, curated, counts, inputs)
    window = DayWindow.for_day(DAY, config.link_params())
    validation, _ = publish_gated(Gate.of(config, window), run_id, staged, out, run_time=RUN_TIME)
    return validation


def _set(df: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    out = df
    for col, value in values.items():
        series = out[col].to_list()
        series[row] = value
        out = out.with_columns(pl.Series(col, series, dtype=out.schema[col]))
    return out


def _input_rate(column: str) -> Defect:
    def defect(df, counts, inputs):
        return df, counts, inputs.with_columns(pl.lit(0.5).alias(column))

    return defect


DEFECTS: dict[str, Defect] = {
    "input.keys_not_null": _input_rate("null_key_rate"),
    "input.types_castable": _input_rate("bad_value_rate"),
    "input.ports_in_range": _input_rate("bad_port_rate"),
    "input.timestamp_in_partition": _input_rate("outside_partition_rate"),
    "input.host_names_valid": _input_rate("bad_host_name_rate"),
    "connection_success.key_unique": lambda df, c, i: (
        pl.concat([df, df.head(1)]),
        {
            **c,
            "curated": c["curated"] + 1,
            "method_socket": c["method_socket"] + 1,
            "rows_in_day": c["rows_in_day"] + 1,
        },
        i,
    ),
    "connection_success.only_connection_success": lambda df, c, i: (
        _set(df, 0, ActionType="ConnectionFailed"),
        c,
        i,
    ),
    "connection_success.timestamp_from": lambda df, c, i: (
        _set(df, 0, Timestamp=datetime(2026, 10, 31, 23, 0, tzinfo=UTC)),
        c,
        i,
    ),
    "connection_success.timestamp_to": lambda df, c, i: (
        _set(df, 0, Timestamp=datetime(2026, 11, 2, 0, 0, tzinfo=UTC)),
        c,
        i,
    ),
    "connection_success.remote_url_hostname": lambda df, c, i: (
        _set(df, 0, RemoteUrl="Not A Host!"),
        c,
        i,
    ),
    "connection_success.proxied_rows_carry_proxy": lambda df, c, i: (
        _set(df, 0, ProxyIP="192.0.2.1"),
        c,
        i,
    ),
    "connection_success.link_method_in_set": lambda df, c, i: (
        _set(df, 0, LinkMethod="guessed"),
        c,
        i,
    ),
    "connection_success.link_delta_within_tolerance": lambda df, c, i: (
        _set(df.sort(s.LINK_DELTA_MS, nulls_last=True), 0, LinkDeltaMs=9000),
        c,
        i,
    ),
    "connection_success.rows_match_counts": lambda df, c, i: (df.head(df.height - 1), c, i),
    "connection_success.counts_reconcile": lambda df, c, i: (
        df,
        {**c, "rows_in_day": c["rows_in_day"] + 1},
        i,
    ),
}


# Defects of the summary tables: (table, what breaks one of its rows or totals).
SummaryDefect = Callable[[pl.DataFrame], pl.DataFrame]
SUMMARY_DEFECTS: dict[str, tuple[str, SummaryDefect]] = {
    "domain_daily.remote_url_unique": (DOMAIN_DAILY_TABLE, lambda d: pl.concat([d, d.head(1)])),
    "domain_daily.remote_url_hostname": (
        DOMAIN_DAILY_TABLE,
        lambda d: _set(d, 0, RemoteUrl="A.Example.COM/"),
    ),
    "domain_daily.registered_domain_is_suffix": (
        DOMAIN_DAILY_TABLE,
        lambda d: _set(d, 0, RegisteredDomain="elsewhere.org"),
    ),
    "domain_daily.counts_consistent": (DOMAIN_DAILY_TABLE, lambda d: _set(d, 0, Devices=10**6)),
    "domain_daily.seen_within_day": (
        DOMAIN_DAILY_TABLE,
        lambda d: _set(d, 0, FirstSeen=datetime(2026, 10, 31, 12, tzinfo=UTC)),
    ),
    "domain_daily.connections_match_curated": (DOMAIN_DAILY_TABLE, lambda d: d.tail(-1)),
    "proxy_coverage.device_unique": (PROXY_COVERAGE_TABLE, lambda d: _set(d, 0, DeviceId=None)),
    "proxy_coverage.legs_add_up": (PROXY_COVERAGE_TABLE, lambda d: _set(d, 0, LinkRate=0.123)),
    "proxy_coverage.status_follows_evidence": (
        PROXY_COVERAGE_TABLE,
        lambda d: _set(d, 0, Status="blind"),
    ),
    "proxy_coverage.connections_match_curated": (PROXY_COVERAGE_TABLE, lambda d: d.tail(-1)),
}


def test_every_critical_expectation_has_a_defect_test() -> None:
    from proxylink.expectations.suites import CHECKS

    critical = {c.id for checks in CHECKS.values() for c in checks if c.severity == "critical"}
    assert critical == set(DEFECTS) | set(SUMMARY_DEFECTS)
    assert not set(DEFECTS) & set(SUMMARY_DEFECTS)


@pytest.mark.parametrize("check", sorted(SUMMARY_DEFECTS))
def test_summary_table_defect_blocks_publishing(published: tuple[Config, Path], check: str) -> None:
    config, root = published
    name, defect = SUMMARY_DEFECTS[check]
    versions = {t: DeltaTable(str(root / t)).version() for t in (CURATED_TABLE, name)}
    good = _good_summaries(root)[name]
    staged, out, paths = _stage(config, *_good(config), summaries={name: defect(good)})
    window = DayWindow.for_day(DAY, config.link_params())
    with pytest.raises(ValidationFailed) as failed:
        publish_gated(Gate.of(config, window), "test-run", staged, out)
    assert check in str(failed.value)
    assert {t: DeltaTable(str(root / t)).version() for t in versions} == versions
    assert pl.read_delta(str(root / name)).drop("date").equals(good)
    assert not any(p.exists() for p in paths), "staged files are cleaned up"


def test_summary_failure_shows_the_offending_values_not_verdicts(
    published: tuple[Config, Path],
) -> None:
    config, _ = published
    good = _good_summaries(published[1])[DOMAIN_DAILY_TABLE]
    bad = _set(good, 0, RemoteUrl="evil\x00.Example.COM/")
    staged, out, _ = _stage(config, *_good(config), summaries={DOMAIN_DAILY_TABLE: bad})
    window = DayWindow.for_day(DAY, config.link_params())
    with pytest.raises(ValidationFailed) as failed:
        publish_gated(Gate.of(config, window), "test-run", staged, out)
    message = str(failed.value)
    assert "domain_daily.remote_url_hostname" in message
    assert "e.g. False" not in message
    assert "example rows for domain_daily.remote_url_hostname:" in message
    assert "RemoteUrl=evil\\x00.Example.COM/" in message  # the value, its NUL escaped


def test_good_staged_data_is_published(published: tuple[Config, Path]) -> None:
    config, root = published
    before = DeltaTable(str(root / CURATED_TABLE)).version()
    _publish(config, *_good(config))
    assert DeltaTable(str(root / CURATED_TABLE)).version() == before + 1


@pytest.mark.parametrize("check", sorted(DEFECTS))
def test_critical_expectation_blocks_publishing(published: tuple[Config, Path], check: str) -> None:
    config, root = published
    table = root / CURATED_TABLE
    version, rows = DeltaTable(str(table)).version(), pl.read_delta(str(table))
    bad = DEFECTS[check](*_good(config))
    staged, out, paths = _stage(config, *bad)
    window = DayWindow.for_day(DAY, config.link_params())
    with pytest.raises(ValidationFailed) as failed:
        publish_gated(Gate.of(config, window), "test-run", staged, out)
    assert failed.value.exit_code == 1
    assert check in str(failed.value)
    assert DeltaTable(str(table)).version() == version
    assert pl.read_delta(str(table)).equals(rows)
    assert not any(p.exists() for p in paths), "staged files are cleaned up"


def test_failed_run_exits_1_prints_failures_and_keeps_table(
    published: tuple[Config, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, root = published
    version = DeltaTable(str(root / CURATED_TABLE)).version()
    conf = tmp_path / "strict.yaml"
    conf.write_text(
        "expectations:\n  connection_success: {min_link_rate: 1.0}\n"
        "  severity: {connection_success.link_rate_floor: critical}\n"
    )
    code = _run_with(config, conf)
    err = capsys.readouterr().err
    assert code == 1
    assert "connection_success.link_rate_floor" in err and "nothing was published" in err
    assert "Traceback" not in err
    assert DeltaTable(str(root / CURATED_TABLE)).version() == version
    statuses = [m["status"] for m in map(_load, (root / "_manifests").rglob("*.json"))]
    assert sorted(statuses) == ["published", "validation_failed"]


def _run_with(config: Config, conf: Path) -> int:
    """The CLI run of the fixture's day, with an extra config file."""
    return main(
        [
            *("run", "--date", str(DAY), "--conf", str(conf), "--events", str(config.events)),
            *("--curated", str(config.curated), "--proxy", "10.20.0.5:8080", "--force"),
        ]
    )


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_warnings_are_reported_and_publishing_goes_on(
    published: tuple[Config, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, root = published
    conf = tmp_path / "floor.yaml"
    conf.write_text("expectations:\n  connection_success: {min_link_rate: 1.0}\n")
    code = _run_with(config, conf)
    out = capsys.readouterr().out
    assert code == 0
    assert "warning: connection_success.link_rate_floor" in out
    assert "report:" in out
    latest = max((root / "_manifests").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    validation = _load(latest)["validation"]
    assert validation["warnings"] == ["connection_success.link_rate_floor"]
    assert all(Path(p).is_file() for p in validation["report_pages"])


def test_internal_error_of_great_expectations_blocks_without_traceback(
    published: tuple[Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import great_expectations as gx

    config, root = published
    version = DeltaTable(str(root / CURATED_TABLE)).version()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store backend unavailable")

    monkeypatch.setattr(gx, "get_context", broken)
    with pytest.raises(ValidationFailed, match=r"validation could not run .*store backend") as e:
        _publish(config, *_good(config))
    assert DeltaTable(str(root / CURATED_TABLE)).version() == version
    # The whole traceback is kept for the manifest, so the failure can be diagnosed from files.
    kept = e.value.validation.to_json()["traceback"]
    assert "Traceback" in kept and "store backend unavailable" in kept and "get_context" in kept


def test_a_run_that_fails_validation_records_the_traceback_in_its_manifest(
    published: tuple[Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import great_expectations as gx

    config, root = published

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store backend unavailable")

    monkeypatch.setattr(gx, "get_context", broken)
    with pytest.raises(ValidationFailed):
        run_day(config, DAY, force=True)
    failed = [m for m in map(_load, (root / "_manifests").rglob("*.json"))]
    failed = [m for m in failed if m["status"] == "validation_failed"]
    assert len(failed) == 1
    assert "RuntimeError: store backend unavailable" in failed[0]["validation"]["traceback"]


# The run ids of the two failures reported (a demo run and a CI run): their random suffix starts
# with four digits, which a date parser reads as a UTC offset of more than 24 hours.
OFFSET_LIKE_RUN_IDS = ("20261203T121529Z-4422ad", "20261203T125459Z-8225ad")


@pytest.mark.parametrize("run_id", OFFSET_LIKE_RUN_IDS)
def test_validation_runs_under_a_run_id_that_reads_as_a_utc_offset(
    published: tuple[Config, Path], run_id: str
) -> None:
    config, root = published
    validation = _publish(config, *_good(config), run_id=run_id)
    assert validation.passed and validation.error is None
    summary = root / "_reports" / "validation" / "runs" / f"{run_id}.html"
    assert summary.is_file() and str(summary) == str(validation.pages[0])
    assert len(validation.pages) == 5  # the run's summary and one page per suite


def test_great_expectations_keeps_the_run_time_of_every_generated_run_id() -> None:
    """Any run id the job makes keys its validation by the run's own time, never a parse of it."""
    import uuid

    ids = [new_run_id(RUN_TIME) for _ in range(20_000)]
    ids += [f"20261203T125459Z-{uuid.UUID(int=i).hex[-6:]}" for i in range(0, 10**6, 997)]
    ids += [*OFFSET_LIKE_RUN_IDS, "20261203T125459Z-000000", "20261203T125459Z-9999ff"]
    for run_id in ids:
        key = run_identifier(run_id, RUN_TIME)
        assert key.to_tuple() == (gx_run_name(run_id), "20261203T125459.000000Z"), run_id
        # Data Docs titles parse the name again: it must not read as a time.
        with pytest.raises(ValueError):
            dateutil.parser.parse(key.run_name)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("expectations:\n  conection_success: {}\n", "expectations.conection_success: unknown"),
        ("expectations:\n  input: {max_nul_key_rate: 0.1}\n", "max_nul_key_rate: unknown"),
        ("expectations:\n  input: {max_null_key_rate: 2}\n", "max_null_key_rate"),
        ("expectations:\n  severity: {input.nope: warning}\n", "unknown expectation id"),
        ("expectations:\n  severity: {input.keys_not_null: fatal}\n", "input.keys_not_null"),
    ],
)
def test_unknown_suite_or_threshold_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(text)
    code = main(["run", "--date", str(DAY), "--conf", str(conf)])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and len(err.strip().splitlines()[-1:]) == 1


def test_settings_for_the_day_bound_timestamps() -> None:
    config = load_config(None, {"proxies": ["10.0.0.1"]})
    window = DayWindow.for_day(DAY, config.link_params())
    settings = config.expectations.settings(window, 5000)
    assert settings.day_start == datetime(2026, 11, 1, tzinfo=UTC)
    assert settings.day_last == datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=UTC)
    assert replace(settings, tolerance_ms=1).tolerance_ms == 1


def test_validate_rechecks_a_published_day_without_rewriting(
    published: tuple[Config, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _config, root = published
    version = DeltaTable(str(root / CURATED_TABLE)).version()
    base = ["validate", "--date", str(DAY), "--curated", str(root), "--proxy", "10.20.0.5:8080"]
    assert main(base) == 0
    assert f"of {len(CHECK_IDS)} expectations" in capsys.readouterr().out
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "expectations:\n  connection_success: {min_link_rate: 1.0}\n"
        "  severity: {connection_success.link_rate_floor: critical}\n"
    )
    assert main([*base, "--conf", str(strict)]) == 1
    assert "connection_success.link_rate_floor" in capsys.readouterr().err
    assert DeltaTable(str(root / CURATED_TABLE)).version() == version
    assert main(["validate", "--date", "2026-11-09", *base[3:]]) == 3
