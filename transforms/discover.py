"""Propose proxies from one day's events: which IP:port behaves like a forward proxy.

A forward proxy is the one socket that many devices reach and on which evidence names many real
destinations (or inspection sees CONNECT requests). A popular direct destination is reached by
many devices too, but is named by one domain (a file share, an intranet site) or sits on a public
address (a CDN). The rules below separate the two; every threshold comes from the caller.

Pure polars: frame in, candidates frame out. No I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms.expressions import normalise_ip
from proxylink.transforms.polars_engine.classify import normalise_domain
from proxylink.transforms.polars_engine.normalise import evidence_fields

# What discovery reads of each row; nothing else is scanned.
COLUMNS: Final = (
    s.TIMESTAMP,
    s.DEVICE_ID,
    s.ACTION_TYPE,
    s.REMOTE_IP,
    s.REMOTE_PORT,
    s.REMOTE_URL,
    s.ADDITIONAL_FIELDS,
)

# Address ranges a proxy inside the organisation lives in.
PRIVATE_NETWORKS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # shared address space (carrier-grade NAT), RFC 6598
        "127.0.0.0/8",  # loopback: a local proxy agent
        "fc00::/7",  # unique local IPv6, RFC 4193
        "::1/128",  # IPv6 loopback
    )
)

RULE_DEVICES: Final = "devices"
RULE_EVIDENCE: Final = "evidence"
RULE_ADDRESS: Final = "address"

# Output columns, in order.
CANDIDATE_COLUMNS: Final = (
    "proxy",
    "ip",
    "port",
    "qualifies",
    "devices",
    "device_share",
    "connections",
    "domains",
    "http_records",
    "connect_records",
    "connect_share",
    "address",
    "example_domains",
    "failed_rules",
    "why",
    "day_devices",
)

_IP, _PORT, _DOMAIN, _CONNECT = "ip", "port", "_domain", "_connect"


@dataclass(frozen=True)
class DiscoveryRules:
    """When an IP:port qualifies as a proxy; all three rules must hold.

    - devices: at least `min_devices` distinct devices, and at least `min_device_share` of the
      day's devices, reach it;
    - evidence: at least `min_connect_records` HTTP inspection records on it are CONNECT and they
      are at least `min_connect_share` of its HTTP inspection records, or evidence on it names at
      least `min_domains` distinct domains;
    - address: its IP is private (RFC 1918, CGNAT, loopback, ULA) or inside one of `ranges`.
    """

    min_devices: int = 10
    min_device_share: float = 0.02
    min_domains: int = 20
    min_connect_records: int = 5
    min_connect_share: float = 0.5
    ranges: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.min_devices < 1 or self.min_domains < 2 or self.min_connect_records < 1:
            raise ValueError("min_devices and min_connect_records must be >= 1, min_domains >= 2")
        if not 0 <= self.min_device_share <= 1 or not 0 < self.min_connect_share <= 1:
            raise ValueError("shares must lie in 0..1 (min_connect_share above 0)")
        for text in self.ranges:
            ipaddress.ip_network(text, strict=False)


def address_class(
    ip: str, ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
) -> str | None:
    """Why an address may hold a proxy (`private 10.0.0.0/8`, `range 203.0.113.0/24`), or None.

    IPv4-mapped IPv6 addresses are judged as their IPv4 address; text that is not an address is
    None.
    """
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for net in PRIVATE_NETWORKS:
        if addr.version == net.version and addr in net:
            return f"private {net}"
    for net in ranges:
        if addr.version == net.version and addr in net:
            return f"range {net}"
    return None


@dataclass(frozen=True)
class SocketPartials:
    """What discovery counts of some rows of the day, in parts that add up over any split of
    the rows (`merge`): per (IP, port, device) its connections, per (IP, port, domain) how
    often evidence names it, per (IP, port) its HTTP and CONNECT inspection records, and the
    day's distinct devices. IPs are normalised (`normalise_ip`)."""

    devices: pl.LazyFrame  # _IP, _PORT, DeviceId, connections
    names: pl.LazyFrame  # _IP, _PORT, _DOMAIN, len
    inspection: pl.LazyFrame  # _IP, _PORT, http_records, connect_records
    day_devices: pl.LazyFrame  # DeviceId (distinct, not blank)

    @classmethod
    def merge(cls, parts: list[SocketPartials]) -> SocketPartials:
        def cat(name: str) -> pl.LazyFrame:
            return pl.concat([getattr(p, name) for p in parts])

        return cls(
            devices=cat("devices")
            .group_by(_IP, _PORT, s.DEVICE_ID)
            .agg(pl.col("connections").sum()),
            names=cat("names").group_by(_IP, _PORT, _DOMAIN).agg(pl.col("len").sum()),
            inspection=cat("inspection")
            .group_by(_IP, _PORT)
            .agg(pl.col("http_records").sum(), pl.col("connect_records").sum()),
            day_devices=cat("day_devices").unique(),
        )


def socket_partials(events: pl.LazyFrame, start: datetime, end: datetime) -> SocketPartials:
    """The partials of the rows of the day [start, end) among `events`.

    Only outbound ConnectionSuccess and HTTP/TLS inspection rows count: on an inbound or listening
    row RemoteIP is not a destination. Rows are reduced first: per (address as written, port), per
    (address, port, RemoteUrl) and per (address, port, inspection JSON), which repeats a lot. The
    JSON parsing and text clean-up (IPv4-mapped addresses, blanks, domain spelling) then run on
    those distinct values instead of on every row.
    """
    action = pl.col(s.ACTION_TYPE)
    port = pl.col(s.REMOTE_PORT).cast(pl.Int64, strict=False)
    day = events.select(COLUMNS).filter(pl.col(s.TIMESTAMP) >= start, pl.col(s.TIMESTAMP) < end)
    rows = (
        day.filter(action.is_in(s.EVIDENCE_SOURCES), pl.col(s.REMOTE_IP).is_not_null())
        .with_columns(pl.when(port.is_between(1, 65535)).then(port).alias(_PORT))
        .filter(pl.col(_PORT).is_not_null())
    )
    ip = normalise_ip(pl.col(s.REMOTE_IP))
    devices = (
        rows.group_by(s.REMOTE_IP, _PORT, s.DEVICE_ID)
        .agg((action == s.CONNECTION_SUCCESS).sum().cast(pl.Int64).alias("connections"))
        .with_columns(ip.alias(_IP))
        .group_by(_IP, _PORT, s.DEVICE_ID)
        .agg(pl.col("connections").sum())
    )
    np_names = (
        rows.filter(action == s.CONNECTION_SUCCESS, pl.col(s.REMOTE_URL).is_not_null())
        .group_by(s.REMOTE_IP, _PORT, s.REMOTE_URL)
        .len()
        .select(s.REMOTE_IP, _PORT, pl.col(s.REMOTE_URL).alias("_named"), "len")
    )
    is_connect = (pl.col("_af_method").str.to_uppercase() == "CONNECT").fill_null(False)
    inspected = (
        rows.filter(action.is_in([s.HTTP_INSPECTED, s.SSL_INSPECTED]))
        .group_by(s.REMOTE_IP, _PORT, s.ACTION_TYPE, s.ADDITIONAL_FIELDS)
        .len()
        .with_columns(evidence_fields())
        .with_columns(is_connect.alias(_CONNECT))
        .with_columns(
            pl.coalesce(
                pl.when(pl.col(_CONNECT)).then(pl.coalesce("_af_host", "_af_uri")),
                pl.col("_af_server_name"),
            ).alias("_named")
        )
    )
    inspection = (
        inspected.with_columns(ip.alias(_IP))
        .group_by(_IP, _PORT)
        .agg(
            pl.col("len").filter(action == s.HTTP_INSPECTED).sum().alias("http_records"),
            pl.col("len").filter(pl.col(_CONNECT)).sum().alias("connect_records"),
        )
        .with_columns(pl.col("http_records", "connect_records").cast(pl.Int64))
    )
    names = (
        pl.concat([np_names, inspected.select(s.REMOTE_IP, _PORT, "_named", "len")])
        .filter(pl.col("_named").is_not_null())
        .with_columns(ip.alias(_IP))
        .pipe(normalise_domain, "_named", _DOMAIN)
        .filter(pl.col(_DOMAIN).is_not_null())
        .group_by(_IP, _PORT, _DOMAIN)
        .agg(pl.col("len").sum().cast(pl.Int64))
    )
    day_devices = (
        day.select(_blank_to_null(pl.col(s.DEVICE_ID)).alias(s.DEVICE_ID)).drop_nulls().unique()
    )
    return SocketPartials(devices, names, inspection, day_devices)


def socket_evidence_of(partials: SocketPartials, day_devices: int) -> pl.LazyFrame:
    """Per IP:port: devices, connections, domains named (and the three most named), HTTP and
    CONNECT inspection records, and the day's device count (the same on every row). The
    partials must hold every row of the sockets they cover."""
    per_socket = partials.devices.group_by(_IP, _PORT).agg(
        _blank_to_null(pl.col(s.DEVICE_ID)).drop_nulls().n_unique().alias("devices"),
        pl.col("connections").sum(),
    )
    names = (
        partials.names.sort([_IP, _PORT, "len", _DOMAIN], descending=[False, False, True, False])
        .group_by(_IP, _PORT, maintain_order=True)
        .agg(pl.len().alias("domains"), pl.col(_DOMAIN).head(3).alias("example_domains"))
    )
    counts = ("connections", "domains", "http_records", "connect_records")
    return (
        per_socket.filter(pl.col(_IP) != "")
        .join(partials.inspection, on=[_IP, _PORT], how="left")
        .join(names, on=[_IP, _PORT], how="left")
        .with_columns(
            *(pl.col(c).fill_null(0).cast(pl.UInt32) for c in counts),
            pl.col("example_domains").fill_null([]),
            pl.lit(day_devices, pl.UInt32).alias("day_devices"),
        )
    )


def socket_evidence(events: pl.LazyFrame, start: datetime, end: datetime) -> pl.LazyFrame:
    """`socket_evidence_of` the partials of every row of the day [start, end)."""
    partials = socket_partials(events, start, end)
    day_devices = partials.day_devices.select(pl.len()).collect().item()
    return socket_evidence_of(partials, int(day_devices))


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.contains(r"^\s*$")).then(None).otherwise(expr)


def judge(evidence: pl.DataFrame, rules: DiscoveryRules, near_misses: int) -> pl.DataFrame:
    """The qualifying sockets, then the `near_misses` rejected ones that came closest.

    Rejected sockets are ranked by how many rules they pass, then by devices, so the first near
    misses are the ones a threshold change would admit.
    """
    ranges = tuple(ipaddress.ip_network(r, strict=False) for r in rules.ranges)
    ips = evidence[_IP].unique().to_list()
    classes = pl.DataFrame(
        {_IP: ips, "address": [address_class(ip, ranges) for ip in ips]},
        schema={_IP: pl.String, "address": pl.String},
    )
    frame = evidence.join(classes, on=_IP, how="left").with_columns(
        (pl.col("devices") / pl.col("day_devices").clip(lower_bound=1)).alias("device_share"),
        pl.when(pl.col("http_records") > 0)
        .then(pl.col("connect_records") / pl.col("http_records"))
        .alias("connect_share"),
    )
    devices_ok = (pl.col("devices") >= rules.min_devices) & (
        pl.col("device_share") >= rules.min_device_share
    )
    connect_ok = (pl.col("connect_records") >= rules.min_connect_records) & (
        pl.col("connect_share").fill_null(0) >= rules.min_connect_share
    )
    domains_ok = pl.col("domains") >= rules.min_domains
    evidence_ok = connect_ok | domains_ok
    address_ok = pl.col("address").is_not_null()
    frame = frame.with_columns(
        devices_ok.alias("_ok_devices"),
        evidence_ok.alias("_ok_evidence"),
        address_ok.alias("_ok_address"),
        connect_ok.alias("_ok_connect"),
        domains_ok.alias("_ok_domains"),
    ).with_columns(
        (pl.col("_ok_devices") & pl.col("_ok_evidence") & pl.col("_ok_address")).alias("qualifies"),
        pl.sum_horizontal("_ok_devices", "_ok_evidence", "_ok_address").alias("_passed"),
    )
    order = ["_passed", "devices", "connections", _IP, _PORT]
    ranked = frame.sort(order, descending=[True, True, True, False, False])
    kept = pl.concat(
        [ranked.filter(pl.col("qualifies")), ranked.filter(~pl.col("qualifies")).head(near_misses)]
    )
    return kept.with_columns(
        _proxy_text().alias("proxy"),
        _failed_rules().alias("failed_rules"),
        _why(rules).alias("why"),
    ).select(CANDIDATE_COLUMNS)


def discover(
    events: pl.LazyFrame,
    start: datetime,
    end: datetime,
    rules: DiscoveryRules,
    near_misses: int = 10,
) -> pl.DataFrame:
    """Candidates of the day [start, end): qualifying IP:ports first, then the near misses."""
    return judge(socket_evidence(events, start, end).collect(), rules, near_misses)


def _proxy_text() -> pl.Expr:
    """`IP:PORT`, with brackets around an IPv6 address: the form `proxies:` accepts."""
    ip, port = pl.col(_IP), pl.col(_PORT).cast(pl.String)
    v6 = ip.str.contains(":")
    return pl.when(v6).then(pl.format("[{}]:{}", ip, port)).otherwise(pl.format("{}:{}", ip, port))


def _failed_rules() -> pl.Expr:
    names = [RULE_DEVICES, RULE_EVIDENCE, RULE_ADDRESS]
    parts = [pl.when(~pl.col(f"_ok_{n}")).then(pl.lit(n)) for n in names]
    return pl.concat_list(parts).list.drop_nulls()


def _pct(expr: pl.Expr) -> pl.Expr:
    return (expr * 100).round(1).cast(pl.String)


def _why(rules: DiscoveryRules) -> pl.Expr:
    """What was seen against each threshold, marked ok or FAILED: every rule for a qualifying
    socket, only the failed rules for a rejected one."""

    def mark(ok: str) -> pl.Expr:
        return pl.when(pl.col(ok)).then(pl.lit("ok")).otherwise(pl.lit("FAILED"))

    devices = pl.format(
        "devices {}: {} (min {}), {}% of the day's {} (min {}%)",
        mark("_ok_devices"),
        pl.col("devices"),
        pl.lit(rules.min_devices),
        _pct(pl.col("device_share")),
        pl.col("day_devices"),
        pl.lit(round(rules.min_device_share * 100, 2)),
    )
    share = pl.col("connect_share").fill_null(0)
    evidence = pl.format(
        "evidence {}: {} CONNECT of {} HTTP inspection records = {}% (min {} and {}%); "
        "{} domains (min {})",
        mark("_ok_evidence"),
        pl.col("connect_records"),
        pl.col("http_records"),
        _pct(share),
        pl.lit(rules.min_connect_records),
        pl.lit(round(rules.min_connect_share * 100, 2)),
        pl.col("domains"),
        pl.lit(rules.min_domains),
    )
    address = pl.format(
        "address {}: {}",
        mark("_ok_address"),
        pl.col("address").fill_null(pl.lit("public, not in discovery.ranges")),
    )
    shown = [
        pl.when(pl.col("qualifies") | ~pl.col(ok)).then(text)
        for ok, text in (
            ("_ok_devices", devices),
            ("_ok_evidence", evidence),
            ("_ok_address", address),
        )
    ]
    return pl.concat_str(shown, separator="; ", ignore_nulls=True)
