"""Both runners publish the same four tables from the same lake, row for row.

The behavioural tests run every case on both engines (the `engine` fixture); this module holds
the two runners to each other on lakes with everything at once: link shapes the behavioural
tests do not have (contested rounds, ties, bucket edges, messy names), one device each, in files
typed every way real exports are typed (ports and timestamps as text, JSON objects, list
columns, nanosecond and naive timestamps, optional columns of mixed types), rows that break the
contract, and a generated sample lake. The Spark runner splits them over several
device partitions, so what it publishes is also the sum of several builds.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from proxylink.jobs.config import load_config
from proxylink.jobs.nightly.run import RunReport, run_day
from proxylink.jobs.sample import SampleSpec, write_sample
from proxylink.transforms import schema as s
from tests.helpers import at, direct, frame, http_row, leg, np_row, ssl_row, write_lake

DAY = date(2026, 11, 1)
OTHER = datetime(2026, 11, 1, 11, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
TO_MIDNIGHT = (MIDNIGHT - at(0)).total_seconds() * 1000
TABLES = {
    "connection_success": [s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID],
    "rejects": [s.SOURCE_FILE, s.REJECT_RECORD],
    "domain_daily": [s.REMOTE_URL],
    "proxy_coverage": [s.DEVICE_ID],
}
RESULTS = ("counts", "reject_reasons", "link_stats", "input_profile", "reconciliation")


# Link shapes beyond tests/test_link.py's, one device each.
CASES: dict[str, list[dict[str, Any]]] = {
    # test_link.py runs the link rules on both engines; these are the shapes it does not.
    "across_midnight": [
        leg(TO_MIDNIGHT, 50001),
        np_row(TO_MIDNIGHT + 2000, "midnight.com", 50001),
    ],
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
    "proxy_networks": [
        leg(0, 50001, RemoteIP=" 10.20.0.7 ", RemotePort=3128),
        leg(100, 50002, RemoteIP="10.20.0.300"),
        leg(200, 50003, RemoteIP="10.20.1.5"),
        leg(300, 50004, RemoteIP="10.30.0.9", RemotePort=8080),
        leg(400, 50005, RemoteIP="10.30.0.9", RemotePort=8081),
        leg(500, 50006, RemoteIP="fd00::5"),
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


def _run(engine: str, events: Path, out: Path, day: date = DAY, **settings: Any) -> RunReport:
    config = load_config(
        None,
        {
            "engine": engine,
            "events": str(events),
            "curated": str(out),
            "proxies": settings.pop("proxies", ["10.20.0.5:8080"]),
            # The case lake breaks the contract on purpose, far above the real-world rates.
            "expectations": {
                "input": {
                    "max_null_key_rate": 1,
                    "max_bad_value_rate": 1,
                    "max_bad_port_rate": 1,
                    "max_outside_partition_rate": 1,
                    "max_bad_host_name_rate": 1,
                },
                "connection_success": {"min_link_rate": 0},
                # No severity override: the messy names (`-`, `/`, unicode) are normalised or
                # kept out of RemoteUrl, so the host-name checks hold on this lake too.
            },
            # Several device partitions, so that Spark's tables are the sum of several builds.
            "spark": {"partitions": 3},
            **settings,
        },
    )
    return run_day(config, day, force=True)


def _diff(expected: pl.DataFrame, got: pl.DataFrame, by: list[str]) -> str:
    """The values that differ, row by row, with the row's key (a device names its case)."""
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


def assert_same_publish(events: Path, tmp_path: Path, day: date = DAY, **settings: Any) -> dict:
    """Run both engines on `events`; every table and every count must be equal. Returns the
    polars run's manifest."""
    manifests = {}
    for engine in ("polars", "spark"):
        report = _run(engine, events, tmp_path / engine, day, **dict(settings))
        assert report.status == "published", engine
        manifests[engine] = json.loads(report.manifest.read_text())
    for name, key in TABLES.items():
        want, got = (
            pl.read_delta(str(tmp_path / e / name))
            .filter(pl.col("date") == day)
            .sort(key, nulls_last=True)
            for e in ("polars", "spark")
        )
        assert got.schema == want.schema, name
        assert got.equals(want), f"{name}:\n{_diff(want, got, key)}"
    for field in RESULTS:
        assert manifests["spark"][field] == manifests["polars"][field], field
    return manifests["polars"]


@pytest.fixture(scope="module")
def case_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_case_lake(tmp_path_factory.mktemp("cases"))


def test_the_case_lake_publishes_the_same_tables(
    spark: object, case_lake: Path, tmp_path: Path
) -> None:
    manifest = assert_same_publish(case_lake, tmp_path)
    counts, reasons = manifest["counts"], manifest["reject_reasons"]
    assert counts["curated"] > 40 and counts["rejected"] >= 8
    assert counts["duplicate"] >= 1 and reasons.get("duplicate_key", 0) >= 1
    assert manifest["reconciliation"]["balanced"]


def test_the_day_after_midnight_publishes_the_same_tables(
    spark: object, case_lake: Path, tmp_path: Path
) -> None:
    manifest = assert_same_publish(case_lake, tmp_path, DAY + timedelta(days=1))
    assert manifest["counts"]["evidence_folded"] == 1


def test_another_tolerance_and_proxy_networks_publish_the_same_tables(
    spark: object, case_lake: Path, tmp_path: Path
) -> None:
    """Bucket boundaries move with the tolerance (750 ms is not a whole second); networks and
    IPv4-mapped spellings decide which sockets are proxied."""
    proxies = ["10.20.0.0/24", "10.30.0.0/16:8080", "[fd00::5]:8080"]
    manifest = assert_same_publish(
        case_lake, tmp_path, link={"tolerance_seconds": 0.75}, proxies=proxies
    )
    assert manifest["counts"]["method_socket"] > 0


def test_a_sample_lake_publishes_the_same_tables(spark: object, tmp_path: Path) -> None:
    lake = write_sample(tmp_path / "lake", SampleSpec(devices=50, start=DAY, days=1, seed=5))
    proxies = [f"{ip}:{port}" for ip, port in SampleSpec().proxies]
    manifest = assert_same_publish(lake.root, tmp_path, proxies=proxies)
    counts = manifest["counts"]
    assert counts["rows_in_day"] > 5_000
    assert counts["method_process"] > 0 and counts["duplicate"] > 0
    coverage = pl.read_delta(str(tmp_path / "polars" / "proxy_coverage"))
    assert {"protected", "blind"} <= set(coverage["Status"])
    domains = pl.read_delta(str(tmp_path / "polars" / "domain_daily"))
    assert domains["TopProcesses"].list.len().max() == 5


@pytest.mark.parametrize("rows_per_chunk", [1, 700])
def test_output_rows_set_beside_their_decisions_by_position_equal_one_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_chunk: int
) -> None:
    """The polars runner sets each file's output rows beside their decisions by position, a
    few files at a time, instead of joining the whole window; the rows, the rejects and the
    evidence must be those of one join over the whole window, and no row may sit beside
    another's tags."""
    from proxylink.jobs.nightly.lake import scan_lake
    from proxylink.jobs.nightly.plan import plan_files
    from proxylink.transforms.params import DayWindow, LinkParams, parse_proxy
    from proxylink.transforms.polars_engine import assemble
    from proxylink.transforms.polars_engine.engine import build_day

    lake = write_sample(tmp_path / "lake", SampleSpec(devices=30, start=DAY, days=1, seed=9))
    params = LinkParams(proxies=tuple(parse_proxy(f"{i}:{p}") for i, p in SampleSpec().proxies))
    window = DayWindow.for_day(DAY, params)
    scan = scan_lake(plan_files(lake.root, window, params), "fail")
    assert len(scan.parts) == len(scan.files) > 20

    def collected(parts: list[pl.LazyFrame] | None) -> tuple[int, list[pl.DataFrame]]:
        frames, _ = build_day(scan.frame, window, params, scan.names, parts=parts)
        chunks = frames.chunks
        assert [c.misaligned.collect().item() for c in chunks] == [0] * len(chunks)
        tables = [
            pl.concat([c.curated.collect() for c in chunks]),
            pl.concat([c.rejects.collect() for c in chunks]),
            frames.evidence,
        ]
        keys = [[s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID], [s.SOURCE_FILE, s.REJECT_RECORD]]
        keys.append([s.DEVICE_ID])
        return len(chunks), [t.sort(k) for t, k in zip(tables, keys, strict=True)]

    one, whole = collected(None)
    monkeypatch.setattr(assemble, "ROWS_PER_CHUNK", rows_per_chunk)
    chunks, chunked = collected(scan.parts)
    assert one == 1 and chunks > 1
    assert whole[0].height > 1_000 and whole[1].height > 0 and whole[2].height > 0
    for expected, got in zip(whole, chunked, strict=True):
        assert got.equals(expected), _diff(expected, got, got.columns[:3])


def test_output_rows_out_of_file_order_are_caught_not_published(tmp_path: Path) -> None:
    """Setting rows beside their decisions by position relies on each file's rows coming in
    file order; a file read in another order is counted as misaligned, and staging refuses."""
    from proxylink.jobs.nightly.lake import scan_lake
    from proxylink.jobs.nightly.plan import plan_files
    from proxylink.jobs.nightly.stage import StageTargets, stage_rows
    from proxylink.transforms.params import DayWindow, LinkParams, parse_proxy
    from proxylink.transforms.polars_engine.engine import build_day

    lake = write_sample(tmp_path / "lake", SampleSpec(devices=10, start=DAY, days=1, seed=3))
    params = LinkParams(proxies=tuple(parse_proxy(f"{i}:{p}") for i, p in SampleSpec().proxies))
    window = DayWindow.for_day(DAY, params)
    scan = scan_lake(plan_files(lake.root, window, params), "fail")
    shuffled = [p.reverse() if i == 3 else p for i, p in enumerate(scan.parts)]
    frames, _ = build_day(scan.frame, window, params, scan.names, parts=shuffled)
    assert sum(c.misaligned.collect().item() for c in frames.chunks) > 0
    tables = {t: tmp_path / "out" / t for t in ("connection_success", "rejects", "proxy_coverage")}
    targets = StageTargets(tables, DAY, "run1")
    with pytest.raises(RuntimeError, match="beside another row's decisions"):
        stage_rows(frames, targets)
    assert targets.orphans(set()) == []
