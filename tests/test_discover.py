"""Proxy discovery: the rules on inline hard cases, scored on the sample lake's truth, and
`proxies: auto` in a run (same rows as the true list, recorded in the manifest, clear failures)."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from proxylink.jobs.cli import main
from proxylink.jobs.config import load_config
from proxylink.jobs.nightly.discover import discover_day
from proxylink.jobs.nightly.plan import plan_files
from proxylink.jobs.nightly.run import fingerprint, run_day
from proxylink.jobs.nightly.status import day_status
from proxylink.jobs.sample import SampleSpec, write_sample
from proxylink.transforms import schema as s
from proxylink.transforms.discover import DiscoveryRules, discover
from proxylink.transforms.params import DayWindow, LinkParams
from proxylink.transforms.polars_engine.normalise import harmonise
from tests.helpers import T0, frame, http_row, leg, np_row, ssl_row, write_lake

DAY = date(2026, 11, 1)
START = T0.replace(hour=0)
DEVICES = [f"{i:040x}" for i in range(40)]
_local_ports = itertools.cycle(range(49152, 65536))  # every connection its own socket
GET = '{"direction":"Out","host":"intranet.corp.example","method":"GET","uri":"/"}'


def socket_rows(
    ip: str,
    port: int,
    devices: range,
    domains: list[str],
    evidence: str,
    shift_ms: float = 0,
    per_device: int = 1,
) -> list[dict[str, Any]]:
    """Each device reaches ip:port `per_device` times, with the evidence a proxy or a direct
    server leaves; the connections name the domains in turn."""
    rows: list[dict[str, Any]] = []
    for i in devices:
        on = {s.DEVICE_ID: DEVICES[i], s.REMOTE_IP: ip, s.REMOTE_PORT: port}
        for k in range(per_device):
            ms, lport = shift_ms + 1000 * i + 100 * k, next(_local_ports)
            domain = domains[(i * per_device + k) % len(domains)]
            if evidence == "connect":  # proxy seen by network inspection
                rows += [leg(ms, lport, **on), http_row(ms + 5, domain, lport, **on)]
            elif evidence == "np":  # proxy seen by network protection only
                rows += [leg(ms, lport, **on), np_row(ms + 5, domain, lport, **on)]
            elif evidence == "direct":  # a direct connection that names its server, and TLS
                rows += [np_row(ms, domain, lport, **on), ssl_row(ms + 5, domain, lport, **on)]
            elif evidence == "get":  # a plain-HTTP intranet site
                rows += [
                    np_row(ms, domain, lport, **on),
                    http_row(ms + 5, domain, lport, **{**on, s.ADDITIONAL_FIELDS: GET}),
                ]
    return rows


@pytest.fixture(scope="module")
def hard_cases() -> pl.LazyFrame:
    many = [f"site{i}.example.com" for i in range(30)]
    rows = [
        # proxies: CONNECT evidence naming few domains; network protection naming many, with
        # half the devices exporting the address IPv4-mapped
        *socket_rows("10.9.0.1", 8080, range(15), many[:3], "connect"),
        *socket_rows("10.9.0.2", 3128, range(15, 22), many[:25], "np", per_device=4),
        *socket_rows("::ffff:10.9.0.2", 3128, range(22, 30), many[:25], "np", per_device=4),
        # direct destinations that every device reaches
        *socket_rows("10.50.0.10", 445, range(40), ["fs01.corp.example"], "direct"),
        *socket_rows("10.50.0.20", 80, range(40), ["intranet.corp.example"], "get"),
        *socket_rows("104.16.0.1", 443, range(40), many, "direct"),  # a public CDN address
        # a proxy only three devices use, and yesterday's proxy (outside the day)
        *socket_rows("192.168.7.7", 8080, range(3), many[:3], "connect", per_device=3),
        *socket_rows("10.9.9.9", 8080, range(40), many, "connect", shift_ms=-86_400_000),
    ]
    return frame(rows).lazy()


def _by_proxy(out: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["proxy"]: row for row in out.iter_rows(named=True)}


def test_rules_take_proxies_and_reject_popular_direct_destinations(
    hard_cases: pl.LazyFrame,
) -> None:
    out = discover(hard_cases, START, START + timedelta(days=1), DiscoveryRules(), 50)
    rows = _by_proxy(out)
    assert sorted(out.filter("qualifies")["proxy"]) == ["10.9.0.1:8080", "10.9.0.2:3128"]
    connect, np_only = rows["10.9.0.1:8080"], rows["10.9.0.2:3128"]
    assert (connect["devices"], connect["domains"], connect["connect_share"]) == (15, 3, 1.0)
    assert (np_only["devices"], np_only["domains"], np_only["http_records"]) == (15, 25, 0)
    assert "address ok: private 10.0.0.0/8" in connect["why"]
    assert rows["10.50.0.10:445"]["failed_rules"] == ["evidence"]
    assert rows["10.50.0.20:80"]["failed_rules"] == ["evidence"]
    assert rows["10.50.0.20:80"]["connect_share"] == 0.0
    assert rows["104.16.0.1:443"]["failed_rules"] == ["address"]
    assert rows["192.168.7.7:8080"]["failed_rules"] == ["devices"]
    assert "evidence FAILED: 0 CONNECT of 0" in rows["10.50.0.10:445"]["why"]
    assert "10.9.9.9:8080" not in rows  # only day D counts
    # the near misses that come closest (two rules of three) lead
    assert out["proxy"].to_list()[2:4] == ["10.50.0.10:445", "10.50.0.20:80"]


def test_configured_ranges_admit_a_public_proxy_and_thresholds_tune(
    hard_cases: pl.LazyFrame,
) -> None:
    end = START + timedelta(days=1)
    ranged = discover(hard_cases, START, end, DiscoveryRules(ranges=("104.16.0.0/16",)), 0)
    assert sorted(ranged["proxy"]) == ["10.9.0.1:8080", "10.9.0.2:3128", "104.16.0.1:443"]
    assert _by_proxy(ranged)["104.16.0.1:443"]["address"] == "range 104.16.0.0/16"
    strict = discover(hard_cases, START, end, DiscoveryRules(min_domains=26), 0)
    assert strict["proxy"].to_list() == ["10.9.0.1:8080"]  # network protection alone too thin


def _direct_sockets(root: Path) -> set[str]:
    """IP:port of every true direct connection of the sample lake (from its truth)."""
    roles = pl.scan_parquet(root / "truth" / "events.parquet").filter(pl.col("role") == "direct")
    key = [s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID]
    files = sorted((root / "DeviceNetworkEvents").glob("date=*/hour=*/*.parquet"))
    lake = pl.concat(
        [
            harmonise(pl.scan_parquet(f)).select(
                *key, s.REMOTE_IP, pl.col(s.REMOTE_PORT).cast(pl.Int64)
            )
            for f in files
        ]
    )
    hits = lake.join(roles, on=key).select(
        pl.format("{}:{}", s.REMOTE_IP, s.REMOTE_PORT).alias("socket")
    )
    return set(hits.collect()["socket"].to_list())


@pytest.mark.parametrize(("devices", "seed"), [(200, 11), (60, 5)])
def test_sample_lake_every_true_proxy_found_and_no_direct_destination(
    tmp_path: Path, devices: int, seed: int
) -> None:
    spec = SampleSpec(devices=devices, start=DAY, days=1, seed=seed)
    summary = write_sample(tmp_path / "lake", spec)
    config = load_config(None, {"events": str(summary.root), "discovery": {"near_misses": 1000}})
    found = discover_day(config, DAY)
    truth = {f"{ip}:{port}" for ip, port in spec.proxies}
    direct = _direct_sockets(tmp_path / "lake")
    assert set(found.proxies) == truth
    assert not set(found.proxies) & direct
    # The lake holds hard negatives: direct destinations that pass the device and address rules
    # (internal servers many devices reach) and fail only for their evidence.
    hard = found.near_misses.filter(
        pl.col("proxy").is_in(list(direct)), pl.col("failed_rules") == ["evidence"]
    )
    assert hard.height >= 5, found.near_misses
    assert (hard["domains"] <= 1).all()
    print(
        f"\ndiscovery on {devices} devices: {len(found.proxies)}/{len(truth)} proxies found, "
        f"0 of {len(direct)} direct destinations taken ({hard.height} hard negatives)"
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleSpec]:
    root = tmp_path_factory.mktemp("discover")
    spec = SampleSpec(devices=60, start=DAY, days=1, seed=5)
    return write_sample(root / "lake", spec).root, spec


def _table(curated: Path) -> pl.DataFrame:
    return pl.read_delta(str(curated / "connection_success")).sort(*s.EVENT_KEY)


def test_auto_run_publishes_the_rows_of_the_true_list_and_records_the_proxies(
    tmp_path: Path, sample: tuple[Path, SampleSpec], engine: str
) -> None:
    """Discovery is a day-wide count over every device, whichever engine runs it."""
    events, spec = sample
    true_list = [f"{ip}:{port}" for ip, port in spec.proxies]
    base = {"events": str(events), "engine": engine}
    listed = load_config(None, {**base, "curated": str(tmp_path / "a"), "proxies": true_list})
    auto = load_config(None, {**base, "curated": str(tmp_path / "b"), "proxies": "auto"})
    run_day(listed, DAY)
    report = run_day(auto, DAY)
    assert report.discovered_proxies == tuple(sorted(true_list))
    assert _table(tmp_path / "b").equals(_table(tmp_path / "a"))

    m = json.loads(report.manifest.read_text())
    assert m["config"]["proxies"] == ["auto"]
    assert m["proxies"]["source"] == "discovered"
    assert m["proxies"]["used"] == sorted(true_list)
    evidence = {p["proxy"]: p for p in m["proxies"]["discovery"]["proxies"]}
    assert set(evidence) == set(true_list)
    # Plain http:// requests through the proxy are HTTP records that are not CONNECT.
    assert all(p["devices"] >= 10 and p["connect_share"] > 0.8 for p in evidence.values())
    assert m["proxies"]["discovery"]["near_misses"]
    assert "discover" in m["durations_s"]
    # Rerun: same files and settings discover the same set, so the day is skipped, and status
    # (which compares with the recorded set) sees no change.
    assert run_day(auto, DAY).status == "skipped"
    assert day_status(auto, DAY).input_changed == "no"


def test_discovered_set_is_part_of_the_fingerprint(sample: tuple[Path, SampleSpec]) -> None:
    events, _ = sample
    config = load_config(None, {"events": str(events), "curated": "x", "proxies": "auto"})
    params = LinkParams(proxies=())
    planned = plan_files(events, DayWindow.for_day(DAY, params), params)
    settings = config.discovery.basis()
    one = fingerprint(planned, config.with_proxies(("10.20.0.5:8080",)).link_params(), settings)
    both = config.with_proxies(("10.20.0.5:8080", "10.20.0.6:3128"))
    two = fingerprint(planned, both.link_params(), settings)
    listed = fingerprint(planned, config.with_proxies(("10.20.0.5:8080",)).link_params())
    assert len({one, two, listed}) == 3


def test_no_qualifying_proxy_fails_with_exit_3_in_one_line(
    tmp_path: Path, sample: tuple[Path, SampleSpec], capsys: pytest.CaptureFixture[str]
) -> None:
    events, _ = sample
    conf = tmp_path / "conf.yaml"
    conf.write_text("proxies: auto\ndiscovery:\n  min_devices: 500\n")
    curated = tmp_path / "cur"
    args = ["--conf", str(conf), "--events", str(events), "--curated", str(curated)]
    code = main(["run", "--date", DAY.isoformat(), *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("proxylink: error")]
    assert code == 3
    assert len(lines) == 1 and "proxies: auto found no proxy" in lines[0], err
    assert "failed devices" in lines[0]
    assert not (curated / "connection_success").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("discovery:\n  min_domains: 1\n", "discovery.min_domains"),
        ("discovery:\n  min_device_share: 1.5\n", "discovery.min_device_share"),
        ("discovery:\n  ranges: [not-a-cidr]\n", "discovery.ranges"),
        ("discovery:\n  min_devises: 3\n", "discovery.min_devises: unknown setting"),
        ("proxies: [auto, 10.0.0.1]\n", "cannot be combined"),
    ],
)
def test_bad_discovery_settings_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text("proxies: auto\n" + text if "proxies" not in text else text)
    code = main(["discover-proxies", "--date", DAY.isoformat(), "--conf", str(conf)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("proxylink: error")]
    assert code == 2
    assert len(lines) == 1 and needle in lines[0], err


def test_discover_command_prints_evidence_and_a_pastable_list(
    tmp_path: Path, sample: tuple[Path, SampleSpec], capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    events, spec = sample
    args = ["discover-proxies", "--date", DAY.isoformat(), "--events", str(events)]
    args += ["--engine", engine]
    assert main([*args, "--format", "yaml"]) == 0
    pasted = yaml.safe_load(capsys.readouterr().out)
    assert set(pasted) == {"proxies"}
    config = load_config(None, {**pasted, "events": str(events)})
    assert set(config.proxies) == {f"{ip}:{port}" for ip, port in spec.proxies}

    assert main([*args, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    first = report["proxies"][0]
    assert {"devices", "connections", "domains", "connect_share", "why"} <= set(first)
    assert report["near_misses"][0]["failed_rules"] == ["evidence"]

    assert main(args) == 0
    text = capsys.readouterr().out
    assert "near misses" in text and "rejected: evidence FAILED" in text
    assert "why: devices ok" in text


def test_discover_command_without_a_proxy_exits_3_but_shows_near_misses(
    tmp_path: Path, sample: tuple[Path, SampleSpec], capsys: pytest.CaptureFixture[str]
) -> None:
    events, _ = sample
    conf = tmp_path / "conf.yaml"
    conf.write_text("discovery:\n  min_domains: 100000\n  min_connect_records: 100000\n")
    args = ["--date", DAY.isoformat(), "--events", str(events), "--conf", str(conf)]
    code = main(["discover-proxies", *args])
    out, err = capsys.readouterr()
    assert code == 3
    assert "none qualified" in out and "10.20.0.5:8080" in out  # the true proxies, as near misses
    assert sum(line.startswith("proxylink: error") for line in err.splitlines()) == 1


def test_inline_lake_run_with_auto(tmp_path: Path, hard_cases: pl.LazyFrame, engine: str) -> None:
    """The CLI path end to end on the hard cases: only the two proxies are linked."""
    events = write_lake(tmp_path, hard_cases.collect())
    curated = tmp_path / "cur"
    args = ["--date", DAY.isoformat(), "--events", str(events), "--curated", str(curated)]
    args += ["--engine", engine]
    code = main(["run", *args, "--proxy", "auto"])
    assert code == 0
    table = _table(curated)
    proxied = table.filter(pl.col(s.IS_PROXIED))
    ips = proxied[s.PROXY_IP].str.replace("^::ffff:", "").unique()
    assert sorted(ips) == ["10.9.0.1", "10.9.0.2"]
    assert proxied[s.LINK_METHOD].unique().to_list() == ["socket"]
    assert table.filter(pl.col(s.REMOTE_IP) == "10.50.0.10")[s.LINK_METHOD].unique().to_list() == [
        "direct"
    ]
