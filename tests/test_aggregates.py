"""The summary tables `domain_daily` and `proxy_coverage`, checked against independent answers.

- Registered domains against the `publicsuffixlist` package's own matcher (another
  implementation of the same list).
- Every count of both tables against DuckDB SQL written here over the published
  `connection_success` rows, so the two tables agree with the table analysts drill into.
- Device status against the sample generator's truth: which devices produced evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from publicsuffixlist import PublicSuffixList

from proxylink.jobs.config import load_config
from proxylink.jobs.nightly.run import run_day
from proxylink.jobs.nightly.suffixes import suffix_rules
from proxylink.jobs.sample import SampleSpec, write_sample
from proxylink.transforms.polars_engine.aggregates import registered_domains
from proxylink.transforms.psl import parse_rules
from tests.helpers import direct, http_row, leg, np_row

DAY = date(2026, 11, 1)

TRICKY = [
    "www.example.co.uk",  # two-label public suffix
    "example.co.uk",
    "co.uk",  # a bare public suffix has no registered domain
    "com",
    "a.b.team.github.io",  # private-section rule
    "foo.bar.ck",  # wildcard *.ck
    "www.ck",  # exception !www.ck
    "x.www.ck",
    "city.kawasaki.jp",  # exception under a wildcard
    "a.b.x.kawasaki.jp",
    "bucket.s3.amazonaws.com",
    "host.internal.unknowntld",  # no rule: the implicit `*`
    "xn--85x722f.xn--55qx5d.cn",  # punycode spelling of a Unicode rule
    "localhost",
    "a..b.example.com",
]


def test_registered_domain_agrees_with_the_reference_matcher() -> None:
    reference = PublicSuffixList()
    got = dict(
        registered_domains(pl.LazyFrame({"RemoteUrl": TRICKY}), suffix_rules()).collect().rows()
    )
    want = {d: reference.privatesuffix(d) for d in TRICKY}
    assert got == want
    # Spot checks that make the rules' kinds visible.
    assert got["www.ck"] == "www.ck" and got["foo.bar.ck"] == "foo.bar.ck"
    assert got["a.b.team.github.io"] == "team.github.io"


def test_ip_literals_have_no_registered_domain() -> None:
    urls = ["10.1.2.3", "2001:db8::1", "8.8.8.8"]
    got = registered_domains(pl.LazyFrame({"RemoteUrl": urls}), suffix_rules()).collect()
    assert got["RegisteredDomain"].null_count() == len(urls)


def test_rule_parsing_keeps_kinds_and_comments_out() -> None:
    rules = parse_rules("// comment\ncom\n*.ck\n!www.ck\n\n公司.cn  trailing words\n")
    assert "com" in rules.normal and "ck" in rules.wildcard and "www.ck" in rules.exception
    assert {"公司.cn", "xn--55qx5d.cn"} <= rules.normal
    with pytest.raises(ValueError):
        parse_rules("// only comments\n")


@pytest.fixture(scope="module")
def sample_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("aggregates")
    summary = write_sample(root / "lake", SampleSpec(devices=80, start=DAY, days=1, seed=3))
    config = load_config(
        Path("conf/local.yaml"),
        {"events": str(summary.root), "curated": str(root / "curated")},
    )
    run_day(config, DAY)
    return root / "curated", summary.truth


def _sql(curated: Path, query: str) -> pl.DataFrame:
    with duckdb.connect() as con:
        for name in ("connection_success", "domain_daily", "proxy_coverage"):
            arrow = pl.read_delta(str(curated / name)).to_arrow()
            con.register(name, arrow)
        return pl.from_arrow(con.sql(query).arrow())  # type: ignore[return-value]


def test_domain_daily_matches_sql_over_connection_success(sample_day: tuple[Path, Path]) -> None:
    curated, _ = sample_day
    want = _sql(
        curated,
        """
        WITH known AS (
            SELECT *, lower(InitiatingProcessFileName) AS proc
            FROM connection_success WHERE RemoteUrl IS NOT NULL),
        procs AS (
            SELECT RemoteUrl, proc, count(*) AS n FROM known
            WHERE proc IS NOT NULL GROUP BY ALL),
        top AS (
            SELECT RemoteUrl, list(proc ORDER BY n DESC, proc)[1:5] AS TopProcesses
            FROM procs GROUP BY RemoteUrl)
        SELECT RemoteUrl, count(DISTINCT DeviceId) AS Devices, count(*) AS Connections,
               count(*) FILTER (WHERE IsProxied) AS ProxiedConnections,
               min(Timestamp) AS FirstSeen, max(Timestamp) AS LastSeen,
               coalesce(any_value(top.TopProcesses), []) AS TopProcesses
        FROM known LEFT JOIN top USING (RemoteUrl)
        GROUP BY RemoteUrl ORDER BY RemoteUrl
        """,
    )
    got = pl.read_delta(str(curated / "domain_daily")).sort("RemoteUrl")
    assert got.height == want.height > 100
    for column in want.columns:
        assert got[column].to_list() == want[column].to_list(), column
    share = got["ProxiedConnections"] / got["Connections"]
    assert (got["ProxiedShare"] - share).abs().max() == 0  # type: ignore[operator]
    reference = PublicSuffixList()
    assert got["RegisteredDomain"].to_list() == [
        reference.privatesuffix(u) for u in got["RemoteUrl"]
    ]


def test_proxy_coverage_matches_sql_and_truth(sample_day: tuple[Path, Path]) -> None:
    curated, truth = sample_day
    want = _sql(
        curated,
        """
        SELECT DeviceId, count(*) AS Connections,
               count(*) FILTER (WHERE LinkMethod IN ('socket', 'process', 'unlinked'))
                   AS ProxyLegs,
               count(*) FILTER (WHERE LinkMethod = 'socket') AS LinkedSocket,
               count(*) FILTER (WHERE LinkMethod = 'process') AS LinkedProcess,
               count(*) FILTER (WHERE LinkMethod = 'unlinked') AS Unlinked,
               count(*) FILTER (WHERE LinkMethod = 'evidence_only') AS EvidenceOnly,
               count(*) FILTER (WHERE LinkMethod = 'direct') AS DirectConnections
        FROM connection_success GROUP BY DeviceId ORDER BY DeviceId
        """,
    )
    got = pl.read_delta(str(curated / "proxy_coverage")).sort("DeviceId")
    assert got.height == want.height
    for column in want.columns:
        assert got[column].to_list() == want[column].to_list(), column
    linked = got["LinkedSocket"] + got["LinkedProcess"]
    rate = pl.Series([n / d if d else None for n, d in zip(linked, got["ProxyLegs"], strict=True)])
    assert got["LinkRate"].to_list() == rate.to_list()

    # Truth: the evidence events of each device that day (network protection, CONNECT and TLS
    # inspection rows) decide its status.
    events = pl.read_parquet(truth / "events.parquet").filter(pl.col("Timestamp").dt.date() == DAY)
    evidence = events.filter(pl.col("role").is_in(["np", "http", "ssl"]))
    with_evidence = set(evidence["DeviceId"])
    expected = {
        d: "protected" if d in with_evidence else ("blind" if legs else "direct-only")
        for d, legs in zip(got["DeviceId"], got["ProxyLegs"], strict=True)
    }
    assert dict(zip(got["DeviceId"], got["Status"], strict=True)) == expected
    statuses = set(expected.values())
    assert {"protected", "blind"} <= statuses, "the sample has devices without protection"


def test_coverage_counts_evidence_that_is_folded_unmatched_or_stands_alone(
    build: Callable[..., tuple[pl.DataFrame, object]], tmp_path: Path
) -> None:
    """A device's EvidenceEvents counts every evidence row of the day: folded into a leg,
    an inspection row that matched nothing, or a network-protection row whose leg is missing."""
    rows = [
        leg(0, 50001, DeviceId="dev-a", DeviceName="old-name"),
        np_row(100, "a.example.com", 50001, DeviceId="dev-a", DeviceName="a-laptop"),
        http_row(200, "lonely.example.com", 50009, DeviceId="dev-a", DeviceName="a-laptop"),
        np_row(300_000, "solo.example.com", 50010, DeviceId="dev-a", DeviceName="a-laptop"),
        leg(1_000, 50002, DeviceId="dev-b", DeviceName="b-desktop"),
        leg(2_000, 50003, DeviceId="dev-b", DeviceName="b-desktop"),
        direct(3_000, "203.0.113.9", DeviceId="dev-c", DeviceName="c-server"),
    ]
    build(rows)
    cov = pl.read_delta(str(tmp_path / "curated" / "proxy_coverage")).sort("DeviceId")
    by_device = {r["DeviceId"]: r for r in cov.iter_rows(named=True)}
    a, b, c = by_device["dev-a"], by_device["dev-b"], by_device["dev-c"]
    assert (a["EvidenceEvents"], a["LinkedSocket"], a["EvidenceOnly"]) == (3, 1, 1)
    assert a["Status"] == "protected" and a["DeviceName"] == "a-laptop" and a["LinkRate"] == 1.0
    assert (b["ProxyLegs"], b["Unlinked"], b["EvidenceEvents"], b["Status"]) == (2, 2, 0, "blind")
    assert b["LinkRate"] == 0.0
    assert (c["DirectConnections"], c["ProxyLegs"], c["Status"]) == (1, 0, "direct-only")
    assert c["LinkRate"] is None


def test_a_day_published_by_a_version_without_the_summary_tables_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly run skips days whose fingerprint is unchanged; the tables a version
    publishes are part of it, so an upgrade fills in the new tables instead of skipping."""
    from proxylink.jobs.nightly import run as run_module

    summary = write_sample(tmp_path / "lake", SampleSpec(devices=20, start=DAY, days=1, seed=4))
    config = load_config(
        Path("conf/local.yaml"),
        {"events": str(summary.root), "curated": str(tmp_path / "curated")},
    )
    with monkeypatch.context() as older:
        older.setattr(run_module, "PUBLISHED_TABLES", ("connection_success", "rejects"))
        assert run_day(config, DAY).status == "published"
        assert run_day(config, DAY).status == "skipped"
    assert run_day(config, DAY).status == "published"
    assert run_day(config, DAY).status == "skipped"
