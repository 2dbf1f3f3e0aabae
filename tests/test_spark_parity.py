"""Engine parity: the Spark engine builds the same day as the polars engine, row for row.

Both engines read the same lake (polars through jobs.lake, Spark through jobs.spark_lake) and
build day D with `build_day`; the curated rows (every column, dtypes included), the rejected
rows, the counts, the reject reasons, the link statistics and the input profile must be equal.

The link edge cases of tests/test_link.py run together, one device per case (rows of different
devices never meet), so that one Spark build covers them all; a mismatch names its case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from helpers import at, direct, frame, http_row, leg, np_row, ssl_row, write_lake
from pyspark.sql import SparkSession

from jobs import lake, publish, spark_lake
from jobs.plan import plan_files
from jobs.sample import SampleSpec, write_sample
from jobs.suffixes import suffix_rules
from transforms import schema as s
from transforms.aggregates import DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE
from transforms.engine import DayOutput
from transforms.params import DayWindow, LinkParams, parse_proxy
from transforms.polars_engine.engine import PolarsEngine
from transforms.spark_engine.engine import SparkEngine

DAY = date(2026, 11, 1)
KEY = [s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID]
OTHER = datetime(2026, 11, 1, 11, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
TO_MIDNIGHT = (MIDNIGHT - at(0)).total_seconds() * 1000


# --- the link edge cases of tests/test_link.py, one device each -------------------------------

CASES: dict[str, list[dict[str, Any]]] = {
    "socket_match": [leg(0, 50001), np_row(30, "WWW.Example.COM", 50001)],
    "evidence_before": [leg(0, 50001), np_row(-1500, "a.example.com", 50001)],
    "tolerance_edges": [
        leg(0, 50001),
        np_row(5000, "edge.example.com", 50001),
        leg(20_000, 50002),
        np_row(25_001, "late.example.com", 50002),
    ],
    "inspection_target_port": [
        leg(0, 50001),
        http_row(20, "api.example.com", 50001, target=8443),
        ssl_row(35, "api.example.com", 50001),
    ],
    "np_preferred": [
        leg(0, 50001),
        http_row(5, "x.example.com", 50001),
        np_row(40, "x.example.com", 50001),
    ],
    "portless_by_process": [leg(0, 50001), np_row(200, "p.example.com", None)],
    "burst_portless": [
        *[leg(i * 10, 50001 + i) for i in range(4)],
        *[np_row(60 + i, f"s{i}.example.com", 50001 + i) for i in (0, 1, 3)],
        np_row(70, "s2.example.com", None),
    ],
    "never_guess_portless": [
        leg(0, 50001),
        leg(10, 50002),
        np_row(5, "a.com", None),
        np_row(12, "b.com", None),
    ],
    "same_domain_not_rivals": [
        leg(0, 50001),
        leg(10, 50002),
        np_row(5, "c.com", None),
        np_row(12, "c.com", None),
    ],
    "never_guess_one_socket": [
        leg(0, 50001),
        np_row(10, "a.com", 50001),
        ssl_row(20, "b.com", 50001),
    ],
    "one_to_one": [leg(0, 50001), leg(3000, 50002), np_row(2900, "one.com", None)],
    "pid_reuse": [
        leg(0, 50001),
        np_row(100, "reuse.com", None, InitiatingProcessCreationTime=OTHER),
    ],
    "port_reuse_other_process": [
        leg(0, 50001),
        np_row(50, "other.com", 50001, InitiatingProcessId=999),
    ],
    "port_reuse_later": [
        leg(0, 50001),
        np_row(20, "first.com", 50001),
        leg(60_000, 50001),
        np_row(60_020, "second.com", 50001),
    ],
    "other_port_never_by_process": [leg(0, 50001), np_row(30, "mine.com", 50009)],
    "missing_leg": [
        np_row(0, "lonely.com", 50005),
        http_row(10, "lonely.com", 50005),
        ssl_row(20, "lonely.com", 50005),
    ],
    "real_target_np_folded": [
        leg(0, 50001),
        np_row(25, "shape2.com", 50001, RemoteIP="93.184.216.34", RemotePort=443),
    ],
    "real_target_without_leg": [
        np_row(25, "direct.com", 50001, RemoteIP="93.184.216.34", RemotePort=443)
    ],
    "corroborating_portless_np": [
        leg(0, 50001),
        http_row(10, "corr.com", 50001),
        np_row(15, "corr.com", None),
        leg(30, 50002),
    ],
    "no_evidence": [leg(0, 50001), leg(100, 50002)],
    "direct": [direct(0, port=445, RemoteUrl="FileServer.corp.local")],
    "across_midnight": [
        leg(TO_MIDNIGHT, 50001),
        np_row(TO_MIDNIGHT + 2000, "midnight.com", 50001),
    ],
    "proxy_port_restricts_leg": [leg(0, 50001, RemotePort=3128)],
    # beyond test_link.py: rounds, ties, buckets and text rules
    "contested_rounds": [
        leg(0, 50001),
        leg(1000, 50002),
        leg(2000, 50003),
        np_row(900, "r1.com", None),
        np_row(1900, "r2.com", None),
        np_row(2100, "r2.com", None),
    ],
    "equal_distance_tie": [
        leg(0, 50001),
        leg(2000, 50002),
        np_row(1000, "tie.com", None),
        np_row(1000, "tie.com", None),
    ],
    "symmetric_evidence": [
        leg(0, 50001),
        np_row(100, "sym.com", 50001),
        np_row(-100, "sym.com", 50001),
    ],
    "bucket_edges": [
        leg(-1, 50001),
        np_row(4_999, "b1.com", 50001),
        leg(9_999, 50002),
        np_row(5_000, "b2.com", 50002),
        leg(10_000, 50003),
        http_row(5_001, "b3.com", 50003),
    ],
    "messy_domains": [
        direct(0, RemoteUrl="HTTPS://User@Mixed.Example.COM:8443/path?q=1#f"),
        direct(10, RemoteUrl="  trailing.dots.com.. "),
        direct(20, RemoteUrl="ftp://host-only"),
        direct(30, RemoteUrl="/"),
        direct(40, RemoteUrl="-"),
        direct(50, RemoteUrl="ünïcode.Example"),
        leg(100, 50001),
        http_row(110, "Api.Example.com:8443", 50001, target=99999),
    ],
    "connect_uri_only": [
        leg(0, 50001),
        http_row(
            10,
            "x",
            50001,
            AdditionalFields='{"method":"connect","uri":"Only.Uri.com:8443"}',
        ),
    ],
    "http_not_connect": [
        leg(0, 50001),
        http_row(10, "x", 50001, AdditionalFields='{"method":"GET","host":"get.com"}'),
    ],
    "ipv4_mapped_exact": [
        leg(0, 50001, RemoteIP="::ffff:10.20.0.5"),
        np_row(10, "mapped.com", 50001, RemoteIP="::FFFF:10.20.0.5"),
    ],
    "blank_and_dash": [
        leg(0, 50001, LocalIP="-", DeviceName="\u2003"),
        direct(5, RemoteUrl="\u00a0Spaced.com\u00a0", DeviceName=""),
        np_row(10, " ", 50001),
        direct(20, ip=" - ", RemoteUrl=""),
    ],
    "fractional_delta": [
        leg(0, 50001),
        np_row(-1500.7, "frac.com", 50001),
        leg(100, 50002),
        np_row(130.9, "frac2.com", 50002),
    ],
    "unknown_actions": [
        leg(0, 50001),
        direct(10, ActionType="SomethingNew"),
        direct(20, ActionType=""),
        direct(30, ActionType=None),
        direct(40, ActionType="DnsConnectionInspected"),
    ],
}

# Rows that break the input contract, each case on its own device too.
BAD: dict[str, list[dict[str, Any]]] = {
    "bad_null_device": [leg(0, 50001, DeviceId=None), leg(10, 50002, DeviceId="  ")],
    "bad_json": [
        leg(0, 50001),
        http_row(10, "x.com", 50001, AdditionalFields="{not json"),
        ssl_row(20, "x.com", 50001, AdditionalFields='{"server":"none"}'),
        http_row(30, "x.com", 50001, AdditionalFields="null"),
        ssl_row(40, "x.com", 50001, AdditionalFields='{"a":1} trailing'),
        http_row(50, "x.com", 50001, AdditionalFields="   "),
        ssl_row(60, "x.com", 50001, AdditionalFields='{"a":1,"a":2}'),
    ],
    "bad_ports": [leg(0, 70000), leg(10, -1), direct(20, port=65536)],
    "duplicates": [],  # filled below: exact copies and a key clash
    "outside_partition": [leg(0, 50001)],  # moved into another hour's file below
}


def _device(name: str) -> str:
    return f"{name:_<40}"


def _case_rows() -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for name, case in (CASES | BAD).items():
        for row in case:
            device = row[s.DEVICE_ID]
            keep = device is None or not device.strip()
            rows.append(row if keep else {**row, s.DEVICE_ID: _device(name)})
    a = leg(500, 50001, DeviceId=_device("duplicates"))
    rows += [a, dict(a), {**a, s.LOCAL_PORT: 50099}, {**a, s.LOCAL_PORT: 50098}]
    b = np_row(600, "dup.com", 50002, DeviceId=_device("duplicates"))
    rows += [b, {**b, s.REMOTE_URL: "other.com"}]
    c = np_row(700, "zzz.com", 50003, DeviceId=_device("duplicates"))
    rows += [c, {**c, s.REMOTE_URL: "aaa.com", s.LOCAL_PORT: 50004}]
    return frame(rows)


def _write_case_lake(root: Path) -> Path:
    """The cases as an hourly lake, plus files that store ports and timestamps as text, carry an
    extra column, or hold a row far outside their hour."""
    rows = _case_rows()
    outside = rows.filter(pl.col(s.DEVICE_ID) == _device("outside_partition"))
    events = write_lake(root, rows.filter(pl.col(s.DEVICE_ID) != _device("outside_partition")))
    hour12 = events / f"date={DAY}" / "hour=12"
    outside.write_parquet(events / f"date={DAY}" / "hour=23" / "part-9.parquet")
    text_ports = frame(
        [
            leg(1000, 50011, DeviceId=_device("text_ports")),
            np_row(1010, "str.com", 50011, DeviceId=_device("text_ports")),
            leg(1100, 50012, DeviceId=_device("text_ports")),
            leg(1200, 50013, DeviceId=_device("text_ports")),
            leg(1300, 50014, DeviceId=_device("text_ports")),
            leg(1400, 50015, DeviceId=_device("text_ports")),
        ]
    ).with_columns(pl.col(s.LOCAL_PORT).cast(pl.String), pl.col(s.REMOTE_PORT).cast(pl.String))
    odd = {"50012": "abc", "50013": " ", "50014": " 443.0 ", "50015": "1e3"}
    port = pl.col(s.LOCAL_PORT)
    text_ports = text_ports.with_columns(port.replace(odd).alias(s.LOCAL_PORT)).with_columns(
        pl.lit("x").alias("OnlyHere"), pl.lit(7, pl.Int16).alias("MixedType")
    )
    text_ports.write_parquet(hour12 / "part-1.parquet")
    stamps = [
        "2026-11-01T12:00:02.5Z",
        "2026-11-01T13:00:02+01:00",
        "2026-11-01 12:00:02.123456789",
        "2026-11-01T12:00:59.999999Z",
        "yesterday-ish",
        "2026-02-30T12:00:00Z",
        "",
    ]
    text_ts = frame(
        [leg(2000 + i, 50100 + i, DeviceId=_device("text_ts")) for i in range(len(stamps))]
    ).with_columns(
        pl.Series(s.TIMESTAMP, stamps),
        pl.lit("text").alias("MixedType"),
        pl.col(s.REPORT_ID).cast(pl.String),
    )
    text_ts.write_parquet(hour12 / "part-2.parquet")
    _write_typed_files(hour12)
    return events


def _write_typed_files(folder: Path) -> None:
    """Files typed as other writers type them: JSON fields as an object, a list column, naive
    and millisecond timestamps, nanosecond timestamps (as pandas writes them)."""
    dev = _device("typed")
    objects = frame(
        [leg(3000, 50201, DeviceId=dev), http_row(3010, "Obj.com", 50201, DeviceId=dev)]
    ).with_columns(
        pl.when(pl.col(s.ACTION_TYPE) == s.HTTP_INSPECTED)
        .then(
            pl.struct(
                pl.lit("Out").alias("direction"),
                pl.lit("obj.com").alias("host"),
                pl.lit("CONNECT").alias("method"),
                pl.lit("obj.com:8443").alias("uri"),
                pl.lit(None, pl.Int64).alias("n"),
            )
        )
        .alias(s.ADDITIONAL_FIELDS),
        pl.lit(["a", "b"]).alias("Tags"),
    )
    objects.write_parquet(folder / "part-3.parquet")
    naive = frame(
        [leg(3100, 50202, DeviceId=dev), np_row(3150.25, "naive.com", 50202, DeviceId=dev)]
    ).with_columns(
        pl.col(s.TIMESTAMP).dt.replace_time_zone(None),
        pl.col(s.PROCESS_CREATION).dt.cast_time_unit("ms"),
    )
    naive.write_parquet(folder / "part-4.parquet")
    nanos = frame(
        [leg(3200, 50203, DeviceId=dev), np_row(3290.5, "nanos.com", 50203, DeviceId=dev)]
    ).with_columns(pl.col(s.TIMESTAMP).dt.cast_time_unit("ns"))
    nanos.write_parquet(folder / "part-5.parquet")


@dataclass(frozen=True)
class Built:
    curated: pl.DataFrame
    rejects: pl.DataFrame
    counts: dict[str, int]
    reasons: dict[str, int]
    stats: dict[str, float | int]
    profile: pl.DataFrame
    domains: pl.DataFrame
    coverage: pl.DataFrame


def _build_both(
    spark: SparkSession, events: Path, day: date, params: LinkParams
) -> tuple[Built, Built, DayOutput[Any]]:
    """Both engines on the same lake; the Spark output is returned too, for writing."""
    window = DayWindow.for_day(day, params)
    planned = plan_files(events, window, params)
    scan = lake.scan_lake(planned, "fail")
    p = PolarsEngine().build_day(scan.frame, window, params, scan.names)
    assert p.evidence is not None
    curated = p.curated.collect()
    summaries = PolarsEngine().aggregates(curated.lazy(), p.evidence, suffix_rules(), day)
    polars_built = Built(
        curated,
        p.rejects.collect(),
        p.counts,
        p.reject_reasons,
        p.link_stats,
        p.input_profile,
        summaries[DOMAIN_DAILY_TABLE].collect(),
        summaries[PROXY_COVERAGE_TABLE].collect(),
    )
    sscan = spark_lake.scan_lake(spark, planned, "fail")
    assert sscan.names == scan.names
    out = SparkEngine().build_day(sscan.frame, window, params, sscan.names)
    assert out.evidence is not None
    sparks = SparkEngine().aggregates(out.curated, out.evidence, suffix_rules(), day)
    spark_built = Built(
        _to_polars(out.curated),
        _to_polars(out.rejects),
        out.counts,
        out.reject_reasons,
        out.link_stats,
        out.input_profile,
        _to_polars(sparks[DOMAIN_DAILY_TABLE]),
        _to_polars(sparks[PROXY_COVERAGE_TABLE]),
    )
    return polars_built, spark_built, out


def _to_polars(frame: Any) -> pl.DataFrame:
    table = frame.toArrow()
    return pl.from_arrow(table)  # type: ignore[return-value]


def _sorted(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    return df.sort(by, nulls_last=True)


def _diff(expected: pl.DataFrame, got: pl.DataFrame, by: list[str]) -> str:
    """The values that differ, row by row, with the row's device (which names its case)."""
    lines = []
    for want, have in zip(expected.iter_rows(named=True), got.iter_rows(named=True), strict=False):
        changed = {c: (want[c], have.get(c)) for c in want if want[c] != have.get(c)}
        if changed:
            where = {c: want.get(c) for c in by}
            lines.append(
                f"{where}: "
                + "; ".join(f"{c}: polars {p!r} spark {s!r}" for c, (p, s) in changed.items())
            )
    if expected.height != got.height:
        lines.append(f"polars {expected.height} rows, spark {got.height}")
    return "\n".join(lines[:20])


def assert_same(expected: Built, got: Built) -> None:
    assert got.curated.schema == expected.curated.schema
    a, b = _sorted(expected.curated, KEY), _sorted(got.curated, KEY)
    assert a.equals(b), _diff(a, b, KEY)
    assert got.rejects.schema == expected.rejects.schema
    by = [s.SOURCE_FILE, s.REJECT_RECORD]
    a, b = _sorted(expected.rejects, by), _sorted(got.rejects, by)
    assert a.equals(b), _diff(a, b, by)
    assert got.counts == expected.counts
    assert got.reasons == expected.reasons
    assert got.stats == expected.stats
    assert got.profile.equals(expected.profile), f"{expected.profile}\n{got.profile}"
    # The summary tables, compared as the Delta tables will hold them (Arrow's large and
    # plain list/string types are one Delta type).
    for name, by in (("domains", [s.REMOTE_URL]), ("coverage", [s.DEVICE_ID])):
        want, have = getattr(expected, name), getattr(got, name)
        assert want.columns == have.columns, name
        a, b = _sorted(want, by), _sorted(have.cast(dict(want.schema)), by)
        assert a.equals(b), _diff(a, b, by)


@pytest.fixture(scope="module")
def case_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_case_lake(tmp_path_factory.mktemp("cases"))


DEFAULT = LinkParams(proxies=(parse_proxy("10.20.0.5:8080"),))


@pytest.fixture(scope="module")
def case_day(spark: SparkSession, case_lake: Path) -> tuple[Built, Built, DayOutput[Any]]:
    return _build_both(spark, case_lake, DAY, DEFAULT)


def test_link_edge_cases_match(case_day: tuple[Built, Built, DayOutput[Any]]) -> None:
    expected, got, _ = case_day
    assert expected.counts["curated"] > 40 and expected.counts["rejected"] >= 8
    assert expected.counts["duplicate"] >= 1 and expected.reasons.get("duplicate_key", 0) >= 1
    assert_same(expected, got)


def test_the_day_after_midnight_matches(spark: SparkSession, case_lake: Path) -> None:
    expected, got, _ = _build_both(spark, case_lake, DAY + timedelta(days=1), DEFAULT)
    assert expected.counts["evidence_folded"] == 1
    assert_same(expected, got)


def test_another_tolerance_matches(
    spark: SparkSession, case_lake: Path, case_day: tuple[Built, Built, DayOutput[Any]]
) -> None:
    """Bucket boundaries move with the tolerance; 750 ms is not a whole second."""
    params = LinkParams(proxies=DEFAULT.proxies, tolerance_ms=750)
    expected, got, _ = _build_both(spark, case_lake, DAY, params)
    assert expected.counts != case_day[0].counts, "the tolerance changes the links"
    assert_same(expected, got)


def test_proxy_networks_match(spark: SparkSession, tmp_path: Path) -> None:
    rows = [
        leg(0, 50001, RemoteIP="::ffff:10.20.0.5", RemotePort=3128),
        np_row(10, "cidr.com", 50001, RemoteIP="::ffff:10.20.0.5", RemotePort=3128),
        leg(100, 50002, RemoteIP=" 10.20.0.7 ", RemotePort=3128),
        leg(200, 50003, RemoteIP="10.20.0.300"),
        leg(300, 50004, RemoteIP="10.20.1.5"),
        leg(400, 50005, RemoteIP="10.30.0.9", RemotePort=8080),
        leg(500, 50006, RemoteIP="10.30.0.9", RemotePort=8081),
        leg(600, 50007, RemoteIP="fd00::5"),
    ]
    events = write_lake(tmp_path, frame(rows))
    proxies = ("10.20.0.0/24", "10.30.0.0/16:8080", "[fd00::5]:8080")
    params = LinkParams(proxies=tuple(parse_proxy(p) for p in proxies))
    expected, got, _ = _build_both(spark, events, DAY, params)
    assert expected.curated[s.IS_PROXIED].sum() == 4
    assert_same(expected, got)


@pytest.fixture(scope="module")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    spec = SampleSpec(devices=50, start=DAY, days=1, seed=5)
    return write_sample(root / "lake", spec).root


def test_sample_lake_matches(spark: SparkSession, sample_lake: Path) -> None:
    proxies = tuple(parse_proxy(f"{ip}:{port}") for ip, port in SampleSpec().proxies)
    params = LinkParams(proxies=proxies)
    expected, got, _ = _build_both(spark, sample_lake, DAY, params)
    assert expected.counts["rows_in_day"] > 5_000
    assert expected.counts["method_process"] > 0 and expected.counts["duplicate"] > 0
    statuses = set(expected.coverage["Status"])
    assert {"protected", "blind"} <= statuses, statuses
    assert expected.domains["TopProcesses"].list.len().max() == 5
    assert_same(expected, got)


def test_spark_files_publish_through_delta(
    case_day: tuple[Built, Built, DayOutput[Any]], tmp_path: Path
) -> None:
    """What run.py does with the Spark engine: write Parquet with Spark, commit with delta-rs,
    and read the same rows back through the Delta log."""
    expected, _, out = case_day
    table = tmp_path / "connection_success"
    paths = spark_lake.write_parquet(out.curated, table, DAY, "run1", "curated")
    assert paths and all(p.parent.name == f"date={DAY}" for p in paths)
    assert not [p for p in paths[0].parent.iterdir() if p.name.startswith(".spark-")]
    publish.commit_files(table, DAY, paths)
    published = pl.read_delta(str(table)).filter(pl.col("date") == DAY)
    assert published.schema == expected.curated.schema
    assert _sorted(published, KEY).equals(_sorted(expected.curated, KEY))


def test_missing_java_is_named(tmp_path: Path) -> None:
    """Without a usable Java, starting the session says what to install."""
    script = textwrap.dedent(
        """
        from jobs.spark_session import build_session
        from transforms.engine import EngineUnavailable
        try:
            build_session()
        except EngineUnavailable as exc:
            print("UNAVAILABLE", exc)
        """
    )
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
        timeout=120,
    )
    assert "UNAVAILABLE" in done.stdout, done.stderr[-2000:]
    assert "openjdk-17-jre-headless" in done.stdout


def test_registered_domains_match(spark: SparkSession) -> None:
    """eTLD+1 on names whose rules differ in kind (wildcard, exception, private, punycode)."""
    from test_aggregates import TRICKY

    from transforms.polars_engine.aggregates import registered_domains as polars_domains
    from transforms.spark_engine.aggregates import registered_domains as spark_domains

    urls = [*TRICKY, "10.1.2.3", "2001:db8::1", ".lead.com", "trail.com.", ""]
    want = polars_domains(pl.LazyFrame({s.REMOTE_URL: urls}), suffix_rules()).collect()
    frame = spark.createDataFrame([(u,) for u in urls], schema=f"{s.REMOTE_URL} string")
    got = _to_polars(spark_domains(frame, suffix_rules()))
    assert dict(got.rows()) == dict(want.rows())
    assert len(dict(want.rows())) == len(urls)
