"""Generate a sample Defender ``DeviceNetworkEvents`` lake together with its ground truth.

Link precision and recall can only be measured on data whose answer is known, and the job's speed
only on data of realistic size and shape. This module produces both at once: an hourly partitioned
lake that carries the quirks of real exports (missing legs, PID reuse, ReportId resets, exact
duplicates, bad rows, and the `Shapes`: plain HTTP through the proxy, keep-alive sockets, port-less
and target-IP network-protection rows, throttled evidence, port pools, sensor clock skew, late
evidence, IPv4-mapped sockets, URL forms, schema drift between files, Log Analytics re-exports)
and truth tables that name every connection, its shapes and the one row that must represent it in
the curated table.

Everything is vectorised over all connections and events. Strings live in small lookup tables and
events carry integer codes until one hour file at a time is materialised, which keeps memory low.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from proxylink.transforms import schema as s

log = logging.getLogger(__name__)

Array = npt.NDArray[Any]
Rng = np.random.Generator

US: Final = 1_000_000
HOUR_US: Final = 3600 * US
DAY_US: Final = 24 * HOUR_US
EPHEMERAL_LO: Final = 49152
EPHEMERAL_SPAN: Final = 65536 - EPHEMERAL_LO
BURST_SPREAD_US: Final = 300_000
MAX_OFFSET_US: Final = 3_900_000  # evidence stays within ±4 s of its leg (job tolerance is 5 s)

# Every string lookup table starts with "" at index 0; index -1 means null.
NULL: Final = -1
EMPTY: Final = 0
PORT_ABC: Final = -2  # LocalPort code written as the string "abc" (bad row)
BAD_ROWS_FILE_MIN: Final = 400  # an hour file gets a bad row only if it has this many others
PORT_POOL: Final = 256  # local ports of a device with a small pool
INSPECTION_REACH_US: Final = 4_800_000  # skew and lag together stay within the job's 5 s
INT64_MAX: Final = np.iinfo(np.int64).max

TS_TYPE: Final = pa.timestamp("us", tz="UTC")
# Bumped whenever the same spec writes a different lake, so that cached lakes (make bench) are
# generated again.
LAKE_FORMAT: Final = 2

# ActionType codes (index into ACTIONS).
ACTIONS: Final = (
    "",
    s.CONNECTION_SUCCESS,
    "ConnectionFailed",
    s.HTTP_INSPECTED,
    s.SSL_INSPECTED,
    "DnsConnectionInspected",
    "InboundConnectionAccepted",
    "ListeningConnectionCreated",
)
A_SUCCESS, A_FAILED, A_HTTP, A_SSL, A_DNS, A_INBOUND, A_LISTEN = range(1, 8)

# Truth roles (index into ROLES).
ROLES: Final = ("leg", "np", "http", "ssl", "direct", "noise", "bad")
R_LEG, R_NP, R_HTTP, R_SSL, R_DIRECT, R_NOISE, R_BAD = range(7)

PROTOCOLS: Final = ("", "Tcp", "Udp")
P_TCP, P_UDP = 1, 2

# Process file names, how often a process slot has that image, and how chatty it is.
PROCESS_NAMES: Final = (
    "",
    "msedge.exe",
    "chrome.exe",
    "teams.exe",
    "outlook.exe",
    "svchost.exe",
    "python.exe",
    "onedrive.exe",
    "System",
)
_SLOT_NAME_P: Final = np.array([0.26, 0.20, 0.13, 0.13, 0.14, 0.05, 0.09])  # names 1..7
_NAME_CHATTINESS: Final = np.array([0.0, 5.0, 5.0, 2.0, 2.0, 1.0, 0.8, 1.0, 0.1])
N_SVCHOST: Final = 5
N_SYSTEM: Final = 8
SERVICE_ACCOUNTS: Final = ("system", "local service", "network service")

_FIRST: Final = (
    "adele", "alex", "bianca", "carlos", "dana", "emil", "farah", "gita", "hank", "ines",
    "jonas", "kim", "lena", "marco", "nora", "omar", "pia", "quinn", "rosa", "sven",
)  # fmt: skip
_LAST: Final = (
    "vance", "wilber", "brown", "smith", "garcia", "khan", "meyer", "novak", "okafor", "patel",
    "rossi", "schmidt", "tanaka", "ueda", "varga", "wong", "yilmaz", "zhou", "lopez", "berg",
)  # fmt: skip

_BRANDS: Final = (
    "contoso", "fabrikam", "tailspin-toys", "adventure-works", "northwind", "wingtiptoys",
    "woodgrove", "litware", "proseware", "fourthcoffee", "alpineskihouse", "blueyonder",
    "coho-winery", "lucerne-publishing", "margies-travel", "treyresearch", "wideworldimporters",
    "humongous-insurance", "relecloud", "southridge-video", "adatum", "cpandl", "bellows-college",
    "fineartschool", "tasmanian-traders", "first-up-consultants", "nod-publishers", "lamna",
    "fincher-architects", "vanarsdel",
)  # fmt: skip
_QUALIFIERS: Final = (
    "", "", "", "", "-news", "-shop", "-cloud", "-cdn", "-media", "-apps", "-online", "-static",
    "-labs", "-group", "-bank", "-mail", "-travel", "-sports",
)  # fmt: skip
_HOSTS: Final = (
    "www", "www", "www", "www", "login", "api", "cdn", "static", "img", "assets", "mail",
    "portal", "app", "update", "download", "files", "auth", "telemetry", "events", "video",
    "docs", "m", "secure", "edge", "sync", "shop", "news", "media",
)  # fmt: skip
_NUMBERED: Final = frozenset({"cdn", "static", "img", "assets", "edge", "video", "download"})
_TLDS: Final = (
    "com", "com", "com", "com", "net", "net", "io", "org", "co.uk", "de", "fr", "cloud", "app",
)  # fmt: skip
_PUBLIC_PREFIXES: Final = (
    (93, 184), (104, 16), (151, 101), (13, 107), (52, 96), (20, 190), (142, 250), (23, 45),
    (185, 199), (172, 67), (199, 232), (34, 107),
)  # fmt: skip
# Intranet hosts reached directly: (name, port).
_INTRANET: Final = (
    ("fs01", 445), ("fs02", 445), ("fs03", 445), ("dc01", 445), ("dc02", 445), ("print01", 445),
    ("print02", 445), ("sccm01", 443), ("wsus01", 80), ("wsus02", 80), ("intranet", 443),
    ("intranet", 80), ("wiki", 443), ("jira", 443), ("git", 443), ("sharepoint", 443),
    ("erp", 443), ("crm", 443), ("hr", 443), ("timesheet", 80), ("build01", 443),
    ("artifacts", 443), ("vault", 443), ("grafana", 443), ("kibana", 443), ("mail", 443),
    ("dc01", 135), ("fs01", 135), ("legacy-app", 80), ("scanner", 80),
)  # fmt: skip
INTRANET_SUFFIX: Final = ".corp.contoso.com"

N_DOMAINS: Final = 3000
N_PUBLIC_DIRECT: Final = 300
N_SPLIT_TUNNEL: Final = 40


@dataclass(frozen=True)
class Shapes:
    """The messy shapes real exports have, each a rate; all on by default, as in real lakes.

    `proxylink sample --without NAME,...` turns shapes off (rate 0); `Shapes.none()` is a clean
    lake. Each shape is flagged in the truth, so that link quality is scored per shape.
    """

    # plain http:// requests through the proxy (no CONNECT): share of proxied connections
    plain_http: float = 0.08
    # ... of those, a keep-alive socket that also carries requests for one or two other hosts
    keepalive_hosts: float = 0.3
    # network-protection rows on the proxy socket without a LocalPort
    portless_np: float = 0.04
    # devices whose network-protection rows show the real target's socket, not the proxy's
    target_ip_np: float = 0.15
    # ... and of those rows, the share without a LocalPort
    target_ip_portless: float = 0.5
    # busy processes: repeated connections of one burst to one domain lose their
    # network-protection row (the sensor throttles repeated events)
    np_throttle: float = 0.1
    # devices whose local ports come from a small pool (256), reused over the day
    port_pool: float = 0.2
    # inspection devices whose sensor clock is 1-2 s off the process events
    sensor_skew: float = 0.4
    # evidence rows 2-4.5 s after their leg
    late_evidence: float = 0.05
    # devices whose process events show IPv4-mapped sockets (::ffff:a.b.c.d); inspection rows
    # keep the plain address
    mapped_sockets: float = 0.1
    # network-protection RemoteUrl as https://Host/path?q or host:443
    url_forms: float = 0.05
    # CONNECT Host headers with :443
    connect_port: float = 0.3
    # hour files written by other writers: int64 or text ports, ns timestamps, Kusto text
    # timestamps (7 digits and Z), fewer optional columns
    schema_drift: float = 0.3
    # hours re-exported by Log Analytics (its extra columns, one optional column fewer): a
    # second file repeating a share of the hour's events
    log_analytics: float = 0.1

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def none(cls) -> Shapes:
        """A clean lake: every shape off."""
        return cls(**dict.fromkeys(cls.names(), 0.0))

    def without(self, names: list[str]) -> Shapes:
        unknown = sorted(set(names) - set(self.names()))
        if unknown:
            raise ValueError(
                f"unknown shape(s) {', '.join(unknown)}; shapes: {', '.join(self.names())}"
            )
        return replace(self, **dict.fromkeys(names, 0.0))


@dataclass(frozen=True)
class SampleSpec:
    """What to generate; the same spec and seed always give the same lake."""

    devices: int = 200
    start: dt.date = dt.date(2026, 11, 1)
    days: int = 1
    seed: int = 7
    connections_per_device: int = 120  # true connections per device per day (mean)
    proxies: tuple[tuple[str, int], ...] = (("10.20.0.5", 8080), ("10.20.0.6", 3128))
    shapes: Shapes = Shapes()


@dataclass(frozen=True)
class SampleSummary:
    """What was written: rows in the lake (duplicates included), connections, hour files."""

    events: int
    connections: int
    files: int
    root: Path
    truth: Path


class _Strings:
    """Append-only string lookup table whose index 0 is the empty string."""

    def __init__(self, values: tuple[str, ...] | list[str] = ()) -> None:
        self.values: list[str] = [""] + [v for v in values if v != ""]

    def add(self, values: list[str]) -> Array:
        """Append values and return their indices."""
        first = len(self.values)
        self.values.extend(values)
        return np.arange(first, first + len(values), dtype=np.int32)

    def arrow(self) -> pa.Array:
        """The table as an Arrow string array, for ``take``."""
        return pa.array(self.values, type=pa.string())


@dataclass
class _World:
    """Devices, processes, destinations and the string tables every event code points into."""

    start_us: int
    end_us: int
    # devices
    n_dev: int
    dev_ip: Array  # index into ips
    dev_proxy_ip: Array
    dev_proxy_port: Array
    dev_np: Array
    dev_insp: Array
    dev_shape2: Array  # network protection shows the real target's socket
    dev_mapped: Array  # process events show IPv4-mapped sockets
    dev_pool: Array  # local ports from a small pool
    dev_skew: Array  # the inspection sensor's clock offset, µs
    dev_activity: Array
    # process slots (a pid holder) and processes (pid + creation time)
    slot_off: Array  # first slot of each device
    slot_count: Array
    slot_cum: Array  # cumulative chattiness, with a leading 0
    slot_succ_time: Array
    slot_succ_proc: Array
    dev_system_proc: Array
    proc_pid: Array
    proc_created: Array
    proc_name: Array  # index into PROCESS_NAMES
    proc_account: Array  # index into accounts
    # proxied destinations
    dom_url: Array  # lower-case name, index into urls
    dom_upper_url: Array  # mixed-case variant or -1
    dom_ip: Array
    dom_port: Array
    dom_cdf: Array
    dom_af_connect: Array
    dom_af_connect_port: Array  # CONNECT with host:443
    dom_af_get: Array  # a plain request through the proxy
    dom_form_url: Array  # RemoteUrl as https://Host/path?q or host:443
    dom_af_ssl: Array
    dom_af_dns: Array
    # direct destinations
    tgt_url: Array  # -1 when the target has no name
    tgt_ip: Array
    tgt_port: Array
    tgt_cdf: Array
    tgt_af_get: Array
    tgt_af_ssl: Array
    intranet_af_dns: Array
    # special values
    ip_dns: Array
    ip_any: Array  # 0.0.0.0 and ::
    ip_bad: int
    af_bad: int
    # string tables
    device_ids: pa.Array
    device_names: pa.Array
    ips: pa.Array
    mapped_ips: pa.Array  # the same table, IPv4 addresses as ::ffff:a.b.c.d
    urls: pa.Array
    afs: pa.Array
    accounts: pa.Array


@dataclass
class _Events:
    """All distinct events as integer codes, in generation order."""

    ts: Array
    dev: Array
    act: Array
    rip: Array
    rport: Array
    url: Array
    lport: Array
    proto: Array
    proc: Array
    af: Array
    conn: Array
    role: Array
    devid_null: Array
    name_mix: Array  # 0 name, 1 null, 2 empty
    account_mix: Array
    rid: Array


def write_sample(
    out: Path, spec: SampleSpec, progress: Callable[[str], None] | None = None
) -> SampleSummary:
    """Write the lake under ``out/DeviceNetworkEvents`` and the truth under ``out/truth``.

    Both subfolders are replaced, so stale hour files of an earlier run never leak into a new one.
    """
    _check(spec)

    def say(message: str) -> None:
        log.info(message)
        if progress is not None:
            progress(message)

    rng = np.random.default_rng(spec.seed)
    root = out / "DeviceNetworkEvents"
    truth = out / "truth"
    for folder in (root, truth):
        if folder.exists():
            shutil.rmtree(folder)
    truth.mkdir(parents=True)

    world = _build_world(rng, spec)
    say(f"world: {world.n_dev} devices, {len(world.proc_pid)} processes")
    conns = _build_connections(rng, spec, world)
    n_conn = len(conns["dev"])
    say(f"connections: {n_conn}")
    string_hours = _string_port_hours(rng, world, spec.days, spec.shapes.schema_drift)
    events, blocks = _build_events(rng, world, conns, string_hours, spec.shapes)
    say(f"events: {len(events.ts)} distinct")
    _assign_report_ids(rng, events, world, spec.days)
    _write_truth_connections(truth / "connections.parquet", world, conns, events, blocks)
    rows, files = _write_lake(
        rng, root, truth / "events.parquet", world, events, string_hours, spec.shapes, say
    )
    say(f"wrote {rows} rows in {files} hour files")
    return SampleSummary(events=rows, connections=n_conn, files=files, root=root, truth=truth)


def _check(spec: SampleSpec) -> None:
    """Reject specs the generator cannot honour, before anything is written."""
    if spec.devices < 1 or spec.days < 1 or spec.connections_per_device < 0:
        raise ValueError("devices and days must be >= 1, connections_per_device >= 0")
    if not spec.proxies:
        raise ValueError("at least one proxy is needed")
    if spec.devices >= 1 << 20:
        raise ValueError("at most 2**20 devices")


# --- the world: devices, processes, destinations ----------------------------------------------


def _build_world(rng: Rng, spec: SampleSpec) -> _World:
    """Draw every entity the events refer to, and the string tables they index."""
    n = spec.devices
    start_us = _to_us(spec.start)
    ips = _Strings()
    urls = _Strings()
    afs = _Strings()
    accounts = _Strings(SERVICE_ACCOUNTS)

    # devices
    id_bytes = rng.integers(0, 256, size=(n, 20), dtype=np.uint8)
    device_ids = ["", *(row.tobytes().hex() for row in id_bytes)]
    kinds = np.where(rng.random(n) < 0.7, "ws", "lt")
    device_names = ["", *(f"{k}-{i:04d}.corp.contoso.com" for i, k in enumerate(kinds))]
    host = np.arange(n)
    dev_ip = ips.add([f"10.{1 + h // 62500}.{h // 250 % 250}.{h % 250 + 2}" for h in host.tolist()])
    proxy_ip = ips.add([ip for ip, _ in spec.proxies])
    proxy_port = np.array([port for _, port in spec.proxies], dtype=np.int32)
    proxy_of = rng.integers(0, len(spec.proxies), n)
    shapes = spec.shapes
    dev_np = rng.random(n) < 0.8
    dev_insp = dev_np & (rng.random(n) < 0.7)
    dev_shape2 = dev_np & (rng.random(n) < shapes.target_ip_np)
    dev_mapped = rng.random(n) < shapes.mapped_sockets
    dev_pool = rng.random(n) < shapes.port_pool
    skewed = dev_insp & (rng.random(n) < shapes.sensor_skew)
    skew = rng.uniform(1.0, 2.0, n) * np.where(rng.random(n) < 0.5, -1, 1) * US
    dev_skew = np.where(skewed, skew, 0).astype(np.int64)
    activity = rng.lognormal(0.0, 0.5, n)
    activity /= activity.mean()
    first = rng.integers(0, len(_FIRST), n)
    last = rng.integers(0, len(_LAST), n)
    dev_user = accounts.add([f"{_FIRST[a]}.{_LAST[b]}" for a, b in zip(first, last, strict=True)])

    # process slots: each holds one pid; a few are reused by a later process (PID reuse)
    slot_count = rng.integers(4, 9, n)
    n_slots = int(slot_count.sum())
    slot_off = np.concatenate([[0], np.cumsum(slot_count)[:-1]])
    slot_dev = np.repeat(np.arange(n), slot_count)
    slot_local = np.arange(n_slots) - slot_off[slot_dev]
    slot_name = 1 + rng.choice(len(_SLOT_NAME_P), n_slots, p=_SLOT_NAME_P / _SLOT_NAME_P.sum())
    slot_pid = 4 * (100 + slot_local * 1500 + rng.integers(0, 1500, n_slots))
    slot_created = start_us - rng.integers(600 * US, 4 * DAY_US, n_slots)
    has_succ = rng.random(n_slots) < 0.04
    n_succ = int(has_succ.sum())
    succ_slot = np.flatnonzero(has_succ)
    succ_time = start_us + rng.integers(0, spec.days * DAY_US, n_succ)
    succ_name = np.where(
        rng.random(n_succ) < 0.6,
        slot_name[succ_slot],
        1 + rng.choice(len(_SLOT_NAME_P), n_succ, p=_SLOT_NAME_P / _SLOT_NAME_P.sum()),
    )
    slot_succ_time = np.full(n_slots, INT64_MAX, dtype=np.int64)
    slot_succ_time[succ_slot] = succ_time
    slot_succ_proc = np.arange(n_slots, dtype=np.int64)
    slot_succ_proc[succ_slot] = n_slots + np.arange(n_succ)
    boot = slot_created.min() - DAY_US if n_slots else start_us - DAY_US
    proc_dev = np.concatenate([slot_dev, slot_dev[succ_slot], np.arange(n)])
    proc_name = np.concatenate([slot_name, succ_name, np.full(n, N_SYSTEM)]).astype(np.int16)
    proc_pid = np.concatenate([slot_pid, slot_pid[succ_slot], np.full(n, 4)]).astype(np.int64)
    proc_created = np.concatenate([slot_created, succ_time, np.full(n, boot)]).astype(np.int64)
    service = 1 + rng.integers(0, len(SERVICE_ACCOUNTS), len(proc_dev))
    proc_account = np.where(proc_name == N_SVCHOST, service, dev_user[proc_dev])
    proc_account = np.where(proc_name == N_SYSTEM, 1, proc_account).astype(np.int32)
    slot_cum = np.concatenate([[0.0], np.cumsum(_NAME_CHATTINESS[slot_name])])

    # proxied destinations: a Zipf-ish pool of public names
    names = _domain_names(rng, N_DOMAINS)
    nd = len(names)
    dom_url = urls.add(names)
    upper = np.flatnonzero(rng.random(nd) < 0.01)
    if len(upper) == 0:
        upper = np.array([min(5, nd - 1)])
    upper_names = [
        names[i].upper() if j % 2 else ".".join(p.capitalize() for p in names[i].split("."))
        for j, i in enumerate(upper.tolist())
    ]
    dom_upper_url = np.full(nd, NULL, dtype=np.int32)
    dom_upper_url[upper] = urls.add(upper_names)
    dom_ip = ips.add(_public_ips(rng, nd))
    dom_port = np.where(rng.random(nd) < 0.02, 8443, 443).astype(np.int32)
    dom_cdf = _zipf_cdf(nd, 1.05)
    dom_af_connect = afs.add(
        [
            _json(
                direction="Out",
                host=d,
                method="CONNECT",
                uri=f"{d}:{p}",
                proxied='["PROXY-CONNECTION -> keep-alive"]',
                status_code="200",
                trans_depth="1",
            )
            for d, p in zip(names, dom_port.tolist(), strict=True)
        ]
    )
    dom_af_connect_port = afs.add(
        [
            _json(
                direction="Out",
                host=f"{d}:{p}",
                method="CONNECT",
                uri=f"{d}:{p}",
                status_code="200",
                trans_depth="1",
            )
            for d, p in zip(names, dom_port.tolist(), strict=True)
        ]
    )
    dom_af_get = afs.add(
        [
            _json(
                direction="Out",
                host=d,
                method=("GET", "GET", "GET", "POST", "HEAD")[i % 5],
                uri=f"http://{d}/{('ocsp', 'crl/ca.crl', 'update/manifest', 'pkg/index')[i % 4]}",
                user_agent="Microsoft-CryptoAPI/10.0",
                proxied='["PROXY-CONNECTION -> keep-alive"]',
                status_code="200",
                trans_depth="1",
            )
            for i, d in enumerate(names)
        ]
    )
    dom_form_url = urls.add(
        [f"https://{d}/path?q=1" if i % 2 else f"{d}:443" for i, d in enumerate(names)]
    )
    dom_af_ssl = afs.add(
        [_json(direction="Out", version="TLSv12", server_name=d, established="true") for d in names]
    )
    dom_af_dns = afs.add([_dns_json(d) for d in names])

    # direct destinations: intranet hosts, nameless public IPs, split-tunnelled public names
    intranet_names = [f"{h}{INTRANET_SUFFIX}" for h, _ in _INTRANET]
    unique_intranet = list(dict.fromkeys(intranet_names))
    intranet_url_of = dict(zip(unique_intranet, urls.add(unique_intranet).tolist(), strict=True))
    intranet_ip_of = dict(
        zip(
            unique_intranet,
            ips.add([f"10.50.{i // 200}.{10 + i % 200}" for i in range(len(unique_intranet))]),
            strict=True,
        )
    )
    n_intra = len(_INTRANET)
    public_ips = ips.add(_public_ips(rng, N_PUBLIC_DIRECT))
    split = np.arange(min(N_SPLIT_TUNNEL, nd))
    tgt_url = np.concatenate(
        [
            [intranet_url_of[name] for name in intranet_names],
            np.full(N_PUBLIC_DIRECT, NULL),
            dom_url[split],
        ]
    ).astype(np.int32)
    tgt_ip = np.concatenate(
        [[intranet_ip_of[name] for name in intranet_names], public_ips, dom_ip[split]]
    ).astype(np.int32)
    tgt_port = np.concatenate(
        [
            [port for _, port in _INTRANET],
            np.where(rng.random(N_PUBLIC_DIRECT) < 0.75, 443, 80),
            np.full(len(split), 443),
        ]
    ).astype(np.int32)
    tgt_weight = np.concatenate(
        [
            np.full(n_intra, 0.5 / n_intra),
            np.full(N_PUBLIC_DIRECT, 0.3 / N_PUBLIC_DIRECT),
            np.full(len(split), 0.2 / max(len(split), 1)),
        ]
    )
    tgt_cdf = np.cumsum(tgt_weight) / tgt_weight.sum()
    ip_text = ips.values
    url_text = urls.values
    tgt_host = [
        url_text[u] if u != NULL else ip_text[i]
        for u, i in zip(tgt_url.tolist(), tgt_ip.tolist(), strict=True)
    ]
    tgt_af_get = afs.add(
        [
            _json(
                direction="Out",
                host=h,
                method="GET",
                uri="/",
                user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                status_code="200",
                trans_depth="1",
            )
            for h in tgt_host
        ]
    )
    tgt_af_ssl = afs.add(
        [
            _json(direction="Out", version="TLSv12", server_name=url_text[u], established="true")
            if u != NULL
            else _json(direction="Out", version="TLSv12", established="true")
            for u in tgt_url.tolist()
        ]
    )
    intranet_af_dns = afs.add([_dns_json(name) for name in unique_intranet])
    ip_dns = ips.add(["10.0.0.53", "10.0.0.54"])
    ip_any = ips.add(["0.0.0.0", "::"])
    ip_bad = int(ips.add(["203.0.113.66"])[0])
    af_bad = int(afs.add(["{not json"])[0])

    return _World(
        start_us=start_us,
        end_us=start_us + spec.days * DAY_US,
        n_dev=n,
        dev_ip=dev_ip,
        dev_proxy_ip=proxy_ip[proxy_of],
        dev_proxy_port=proxy_port[proxy_of],
        dev_np=dev_np,
        dev_insp=dev_insp,
        dev_shape2=dev_shape2,
        dev_mapped=dev_mapped,
        dev_pool=dev_pool,
        dev_skew=dev_skew,
        dev_activity=activity,
        slot_off=slot_off,
        slot_count=slot_count,
        slot_cum=slot_cum,
        slot_succ_time=slot_succ_time,
        slot_succ_proc=slot_succ_proc,
        dev_system_proc=n_slots + n_succ + np.arange(n),
        proc_pid=proc_pid,
        proc_created=proc_created,
        proc_name=proc_name,
        proc_account=proc_account,
        dom_url=dom_url,
        dom_upper_url=dom_upper_url,
        dom_ip=dom_ip,
        dom_port=dom_port,
        dom_cdf=dom_cdf,
        dom_af_connect=dom_af_connect,
        dom_af_connect_port=dom_af_connect_port,
        dom_af_get=dom_af_get,
        dom_form_url=dom_form_url,
        dom_af_ssl=dom_af_ssl,
        dom_af_dns=dom_af_dns,
        tgt_url=tgt_url,
        tgt_ip=tgt_ip,
        tgt_port=tgt_port,
        tgt_cdf=tgt_cdf,
        tgt_af_get=tgt_af_get,
        tgt_af_ssl=tgt_af_ssl,
        intranet_af_dns=intranet_af_dns,
        ip_dns=ip_dns,
        ip_any=ip_any,
        ip_bad=ip_bad,
        af_bad=af_bad,
        device_ids=pa.array(device_ids, type=pa.string()),
        device_names=pa.array(device_names, type=pa.string()),
        ips=ips.arrow(),
        mapped_ips=pa.array(
            [f"::ffff:{v}" if v.count(".") == 3 else v for v in ips.values], type=pa.string()
        ),
        urls=urls.arrow(),
        afs=afs.arrow(),
        accounts=accounts.arrow(),
    )


def _domain_names(rng: Rng, n: int) -> list[str]:
    """Realistic-looking, unique, lower-case host names."""
    names: list[str] = []
    while len(names) < n:
        m = 2 * n
        h = rng.integers(0, len(_HOSTS), m)
        b = rng.integers(0, len(_BRANDS), m)
        q = rng.integers(0, len(_QUALIFIERS), m)
        t = rng.integers(0, len(_TLDS), m)
        num = rng.integers(1, 40, m)
        fresh = [
            f"{_HOSTS[hi]}{ni if _HOSTS[hi] in _NUMBERED and ni < 25 else ''}"
            f".{_BRANDS[bi]}{_QUALIFIERS[qi]}.{_TLDS[ti]}"
            for hi, bi, qi, ti, ni in zip(
                h.tolist(), b.tolist(), q.tolist(), t.tolist(), num.tolist(), strict=True
            )
        ]
        names = list(dict.fromkeys(names + fresh))
    return names[:n]


def _public_ips(rng: Rng, n: int) -> list[str]:
    """Public-looking IPv4 addresses from a few well-known ranges."""
    prefix = rng.integers(0, len(_PUBLIC_PREFIXES), n)
    c = rng.integers(0, 256, n)
    d = rng.integers(1, 255, n)
    return [
        f"{_PUBLIC_PREFIXES[p][0]}.{_PUBLIC_PREFIXES[p][1]}.{ci}.{di}"
        for p, ci, di in zip(prefix.tolist(), c.tolist(), d.tolist(), strict=True)
    ]


def _zipf_cdf(n: int, exponent: float) -> Array:
    """Cumulative weights of a Zipf-like popularity ranking."""
    w = 1.0 / np.power(np.arange(n) + 2.0, exponent)
    return np.cumsum(w) / w.sum()


def _json(**fields: str) -> str:
    """Compact JSON text, as Defender writes AdditionalFields."""
    return json.dumps(fields, separators=(",", ":"))


def _dns_json(name: str) -> str:
    """AdditionalFields of a DnsConnectionInspected row."""
    return _json(direction="Out", query=name, query_class="1", query_type="1", rcode="0")


def _to_us(day: dt.date) -> int:
    """Microseconds since the epoch at UTC midnight of a date."""
    return (day - dt.date(1970, 1, 1)).days * DAY_US


# --- connections: the truth unit ----------------------------------------------------------------

_MINUTE_CDF: Final = (lambda w: np.cumsum(w) / w.sum())(
    0.08
    + np.exp(-0.5 * ((np.arange(1440) / 60.0 - 10.0) / 2.2) ** 2)
    + 0.8 * np.exp(-0.5 * ((np.arange(1440) / 60.0 - 14.5) / 2.0) ** 2)
    + 0.15 * np.exp(-0.5 * ((np.arange(1440) / 60.0 - 20.0) / 1.5) ** 2)
)


def _sample_times(rng: Rng, n: int, world: _World, margin_us: int) -> Array:
    """Times in [start, end - margin) with a working-day shape (UTC)."""
    days = (world.end_us - world.start_us) // DAY_US
    day = rng.integers(0, days, n)
    minute = np.minimum(np.searchsorted(_MINUTE_CDF, rng.random(n), side="right"), 1439)
    t = world.start_us + day * DAY_US + minute * 60 * US + rng.integers(0, 60 * US, n)
    return np.minimum(t, world.end_us - margin_us - 1).astype(np.int64)


def _pick_process(rng: Rng, world: _World, dev: Array, t: Array) -> Array:
    """A process of each device alive at t, chatty images more often (vectorised)."""
    lo = world.slot_cum[world.slot_off[dev]]
    hi = world.slot_cum[world.slot_off[dev] + world.slot_count[dev]]
    target = lo + rng.random(len(dev)) * (hi - lo)
    slot = np.searchsorted(world.slot_cum, target, side="right") - 1
    slot = np.clip(slot, world.slot_off[dev], world.slot_off[dev] + world.slot_count[dev] - 1)
    return np.where(t >= world.slot_succ_time[slot], world.slot_succ_proc[slot], slot)


def _build_connections(rng: Rng, spec: SampleSpec, world: _World) -> dict[str, Array]:
    """Bursts of connections from one process, each with its socket, kind and destination."""
    p = 0.45
    k_values = np.arange(1, 9)
    pk = p * (1 - p) ** (k_values - 1)
    pk[-1] += (1 - p) ** 8
    mean_k = float((k_values * pk).sum())
    lam = spec.connections_per_device * spec.days * world.dev_activity / mean_k
    per_dev = rng.poisson(lam)
    n_burst = int(per_dev.sum())
    b_dev = np.repeat(np.arange(world.n_dev), per_dev)
    b_t = _sample_times(rng, n_burst, world, BURST_SPREAD_US + 1)
    # A few bursts right at day edges, so evidence crosses midnight at every lake size.
    edge = rng.choice(n_burst, min(n_burst, max(16, n_burst // 1000)), replace=False)
    day_start = world.start_us + rng.integers(0, spec.days, len(edge)) * DAY_US
    near = rng.integers(0, US, len(edge))
    late = day_start + DAY_US - BURST_SPREAD_US - 1 - near // 2
    b_t[edge] = np.where(np.arange(len(edge)) % 2 == 0, late, day_start + near)
    order = np.argsort(b_t, kind="stable")
    b_dev, b_t = b_dev[order], b_t[order]
    b_k = np.minimum(rng.geometric(p, n_burst), 8).astype(np.int32)
    b_proc = _pick_process(rng, world, b_dev, b_t)
    b_proxied = rng.random(n_burst) < 0.85
    b_doms = np.searchsorted(world.dom_cdf, rng.random((n_burst, 4)), side="right")
    b_doms = np.minimum(b_doms, len(world.dom_cdf) - 1)
    b_tgts = np.minimum(
        np.searchsorted(world.tgt_cdf, rng.random((n_burst, 4)), side="right"),
        len(world.tgt_cdf) - 1,
    )
    b_mix = np.where(rng.random(n_burst) < 0.7, 1, rng.integers(2, 5, n_burst))
    b_mix = np.minimum(b_mix, b_k)

    n = int(b_k.sum())
    burst = np.repeat(np.arange(n_burst), b_k)
    b_first = np.concatenate([[0], np.cumsum(b_k)[:-1]]).astype(np.int64)
    pos = np.arange(n) - b_first[burst]
    t = b_t[burst] + np.where(pos == 0, 0, rng.integers(0, BURST_SPREAD_US + 1, n))
    pick = np.where(pos == 0, 0, rng.integers(0, 1 << 30, n) % b_mix[burst])
    dev = b_dev[burst]
    proxied = b_proxied[burst]
    dom = b_doms[burst, pick]
    tgt = b_tgts[burst, pick]
    shapes = spec.shapes
    plain = proxied & (rng.random(n) < shapes.plain_http)
    keepalive = plain & (rng.random(n) < shapes.keepalive_hosts)
    target_port = np.where(proxied, world.dom_port[dom], world.tgt_port[tgt]).astype(np.int32)
    target_port = np.where(plain, 80, target_port).astype(np.int32)

    # Windows-like ephemeral ports: per device, sequential in time, other sockets interleave.
    key_shift = 62 - max(1, int(world.n_dev).bit_length())
    key = (dev.astype(np.int64) << key_shift) | (t - world.start_us)
    by_dev = np.argsort(key, kind="stable")
    steps = np.cumsum(rng.integers(1, 4, n)).astype(np.int64)
    dev_sorted = dev[by_dev]
    dev_first = np.searchsorted(dev_sorted, np.arange(world.n_dev), side="left")
    before = np.concatenate([[0], steps])[dev_first[dev_sorted]]
    port0 = rng.integers(0, EPHEMERAL_SPAN, world.n_dev)
    lport = np.empty(n, dtype=np.int32)
    # A device with a small pool reuses its ports all day (a few hundred connections apart).
    span = np.where(world.dev_pool[dev_sorted], PORT_POOL, EPHEMERAL_SPAN)
    lport[by_dev] = EPHEMERAL_LO + (port0[dev_sorted] + steps - before) % span

    # which rows each connection leaves
    on_np = proxied & world.dev_np[dev]
    on_insp = proxied & world.dev_insp[dev]
    np_present = on_np & (rng.random(n) < 0.99)
    # A busy process: a repeated connection of a burst to one domain is throttled out of
    # network protection's events now and then.
    _, first_of = np.unique(burst.astype(np.int64) * (1 << 20) + dom, return_index=True)
    repeat = np.ones(n, dtype=bool)
    repeat[first_of] = False
    np_throttled = np_present & repeat & (rng.random(n) < shapes.np_throttle)
    np_present &= ~np_throttled
    http_present = on_insp & (rng.random(n) < 0.92)
    ssl_present = on_insp & ~plain & (rng.random(n) < 0.85)
    evidence = np_present | http_present | ssl_present
    leg_present = ~(on_np & evidence & (rng.random(n) < 0.01))
    np_shape2 = np_present & world.dev_shape2[dev]
    np_target_portless = np_shape2 & (rng.random(n) < shapes.target_ip_portless)
    np_portless = np_present & ~np_shape2 & (rng.random(n) < shapes.portless_np)
    named = world.tgt_url[tgt] != NULL
    direct_url = np.where(
        named & (rng.random(n) < 0.85), world.tgt_url[tgt], rng.integers(-1, 1, n)
    ).astype(np.int32)
    return {
        "dev": dev.astype(np.int32),
        "t": t.astype(np.int64),
        "proc": b_proc[burst].astype(np.int32),
        "proxied": proxied,
        "dom": dom,
        "tgt": tgt,
        "target_port": target_port,
        "lport": lport,
        "burst": burst.astype(np.int64),
        "burst_size": b_k[burst],
        "leg_present": leg_present,
        "np_present": np_present,
        "http_present": http_present,
        "ssl_present": ssl_present,
        "np_shape2": np_shape2,
        "np_target_portless": np_target_portless,
        "np_portless": np_portless,
        "np_throttled": np_throttled,
        "plain": plain,
        "keepalive": keepalive,
        "direct_url": np.where(proxied, NULL, direct_url).astype(np.int32),
    }


# --- events -------------------------------------------------------------------------------------


def _offsets(rng: Rng, n: int, late: float = 0.0) -> Array:
    """Evidence time minus leg time: mostly sub-second, sometimes seconds, a quarter before;
    a `late` share 2-4.5 s after."""
    small = np.minimum(rng.exponential(0.18 * US, n), 1.5 * US)
    large = rng.uniform(0.5 * US, 3.0 * US, n)
    mag = np.minimum(np.where(rng.random(n) < 0.85, small, large), MAX_OFFSET_US)
    sign = np.where(rng.random(n) < 0.25, -1, 1)
    lag = np.where(rng.random(n) < late, rng.uniform(2.0 * US, 4.5 * US, n), sign * mag)
    return lag.astype(np.int64)


def _inspected(rng: Rng, world: _World, dev: Array, n: int, late: float) -> Array:
    """Offsets of inspection rows: the lag plus the device's sensor clock offset, kept within
    reach of the job's tolerance."""
    lag = _offsets(rng, n, late) + world.dev_skew[dev]
    return np.clip(lag, -INSPECTION_REACH_US, INSPECTION_REACH_US).astype(np.int64)


def _null_or_empty(rng: Rng, n: int, p_null: float = 0.5) -> Array:
    """Codes for a string that is absent, written as null or as "" at random."""
    return np.where(rng.random(n) < p_null, NULL, EMPTY).astype(np.int32)


def _ephemeral(rng: Rng, n: int) -> Array:
    """Random ephemeral ports, for sockets that are not part of any connection."""
    return rng.integers(EPHEMERAL_LO, 65536, n).astype(np.int32)


_COLUMNS: Final = ("ts", "dev", "act", "rip", "rport", "url", "lport", "proto", "proc", "af")
_DTYPES: Final = {
    "ts": np.int64,
    "dev": np.int32,
    "act": np.int8,
    "rip": np.int32,
    "rport": np.int32,
    "url": np.int32,
    "lport": np.int32,
    "proto": np.int8,
    "proc": np.int32,
    "af": np.int32,
    "conn": np.int64,
    "role": np.int8,
}


def _block(n: int, role: int, conn: Array | int, **cols: Array | int) -> dict[str, Array]:
    """One kind of event as full-length typed columns (scalars broadcast)."""
    out: dict[str, Array] = {}
    for name, value in {**cols, "conn": conn, "role": role}.items():
        out[name] = np.broadcast_to(np.asarray(value, dtype=_DTYPES[name]), (n,))
    return out


def _string_port_hours(rng: Rng, world: _World, days: int, drift: float) -> Array:
    """Hour numbers (since the epoch) whose file stores ports as strings: about 1 in 12, none
    without schema drift."""
    if drift <= 0:
        return np.zeros(0, dtype=np.int64)
    hours = world.start_us // HOUR_US + np.arange(days * 24)
    chosen = hours[rng.random(len(hours)) < 1 / 12]
    if len(chosen) == 0:
        chosen = hours[rng.integers(0, len(hours), 1)]
    return chosen.astype(np.int64)


def _build_events(
    rng: Rng, world: _World, c: dict[str, Array], string_hours: Array, shapes: Shapes
) -> tuple[_Events, dict[str, Array]]:
    """Every row the connections and the background leave, as integer codes.

    Also returns, per role, the connection ids in block order and the block's first row, so the
    truth can point at the representing rows once ReportIds exist.
    """
    dev, t, proc, lport = c["dev"], c["t"], c["proc"], c["lport"]
    prox_ip, prox_port = world.dev_proxy_ip[dev], world.dev_proxy_port[dev]
    blocks: list[dict[str, Array]] = []

    legs = np.flatnonzero(c["proxied"] & c["leg_present"])
    blocks.append(
        _block(
            len(legs), R_LEG, legs, ts=t[legs], dev=dev[legs], act=A_SUCCESS, rip=prox_ip[legs],
            rport=prox_port[legs], url=_null_or_empty(rng, len(legs)), lport=lport[legs],
            proto=P_TCP, proc=proc[legs], af=_null_or_empty(rng, len(legs), 0.9),
        )
    )  # fmt: skip

    nps = np.flatnonzero(c["np_present"])
    s2 = c["np_shape2"][nps]
    dom = c["dom"][nps]
    upper = world.dom_upper_url[dom]
    url = np.where((upper != NULL) & (rng.random(len(nps)) < 0.5), upper, world.dom_url[dom])
    url = np.where(rng.random(len(nps)) < shapes.url_forms, world.dom_form_url[dom], url)
    portless = c["np_portless"][nps] | c["np_target_portless"][nps]
    blocks.append(
        _block(
            len(nps), R_NP, nps, ts=t[nps] + _offsets(rng, len(nps), shapes.late_evidence),
            dev=dev[nps], act=A_SUCCESS,
            rip=np.where(s2, world.dom_ip[dom], prox_ip[nps]),
            rport=np.where(s2, world.dom_port[dom], prox_port[nps]),
            url=url, lport=np.where(portless, NULL, lport[nps]), proto=P_TCP, proc=proc[nps],
            af=_null_or_empty(rng, len(nps), 0.9),
        )
    )  # fmt: skip

    with_port = rng.random(len(c["dom"])) < shapes.connect_port
    connect = np.where(
        with_port, world.dom_af_connect_port[c["dom"]], world.dom_af_connect[c["dom"]]
    )
    inspection = np.where(c["plain"], world.dom_af_get[c["dom"]], connect)
    first_request = np.zeros(len(t), dtype=np.int64)
    for role, act, present, table in (
        (R_HTTP, A_HTTP, c["http_present"], inspection),
        (R_SSL, A_SSL, c["ssl_present"], world.dom_af_ssl[c["dom"]]),
    ):
        idx = np.flatnonzero(present)
        lag = _inspected(rng, world, dev[idx], len(idx), shapes.late_evidence)
        if role == R_HTTP:  # a plain request follows its connection's opening
            lag = np.where(c["plain"][idx], np.abs(lag), lag)
            first_request[idx] = t[idx] + lag
        blocks.append(
            _block(
                len(idx), role, idx, ts=t[idx] + lag, dev=dev[idx], act=act,
                rip=prox_ip[idx], rport=prox_port[idx], url=NULL, lport=lport[idx], proto=P_TCP,
                proc=NULL, af=table[idx],
            )
        )  # fmt: skip

    # A keep-alive socket to the proxy carries one or two more requests, for other hosts.
    more = np.flatnonzero(c["keepalive"] & c["http_present"])
    more = np.concatenate([more, more[rng.random(len(more)) < 0.5]])
    others = np.minimum(
        np.searchsorted(world.dom_cdf, rng.random(len(more)), side="right"), len(world.dom_cdf) - 1
    )
    # The later requests follow the first on its socket, within reach of the leg.
    later = rng.uniform(0.05 * US, 2.0 * US, len(more)).astype(np.int64)
    request_ts = np.minimum(first_request[more] + later, t[more] + INSPECTION_REACH_US)
    blocks.append(
        _block(
            len(more), R_HTTP, more, dev=dev[more], act=A_HTTP,
            ts=np.maximum(request_ts, first_request[more] + 1),
            rip=prox_ip[more], rport=prox_port[more], url=NULL, lport=lport[more], proto=P_TCP,
            proc=NULL, af=world.dom_af_get[others],
        )
    )  # fmt: skip

    direct = np.flatnonzero(~c["proxied"])
    tgt = c["tgt"][direct]
    blocks.append(
        _block(
            len(direct), R_DIRECT, direct, ts=t[direct], dev=dev[direct], act=A_SUCCESS,
            rip=world.tgt_ip[tgt], rport=world.tgt_port[tgt], url=c["direct_url"][direct],
            lport=lport[direct], proto=P_TCP, proc=proc[direct],
            af=_null_or_empty(rng, len(direct), 0.9),
        )
    )  # fmt: skip

    blocks.extend(_noise_blocks(rng, world, c, direct))
    n_rows = sum(len(b["ts"]) for b in blocks)
    hours, per_hour = np.unique(
        np.concatenate([b["ts"] for b in blocks]) // HOUR_US, return_counts=True
    )
    bad, bad_no_device = _bad_block(
        rng, world, n_rows, string_hours, hours[per_hour >= BAD_ROWS_FILE_MIN]
    )
    blocks.append(bad)
    firsts = np.cumsum([0] + [len(b["ts"]) for b in blocks])

    cols = {name: np.concatenate([b[name] for b in blocks]) for name in (*_COLUMNS, "conn", "role")}
    del blocks
    n = len(cols["ts"])
    mix_draw = rng.integers(0, 100, (2, n), dtype=np.int8)
    mix = np.where(mix_draw < 2, 1, np.where(mix_draw < 4, 2, 0)).astype(np.int8)
    devid_null = np.zeros(n, dtype=bool)
    devid_null[n_rows:] = bad_no_device
    events = _Events(
        **cols,
        devid_null=devid_null,
        name_mix=mix[0],
        account_mix=mix[1],
        rid=np.zeros(n, dtype=np.int64),
    )
    # block order above: leg, np, http, ssl, keep-alive requests, direct, ...
    located = {"leg": (firsts[0], legs), "np": (firsts[1], nps), "direct": (firsts[5], direct)}
    return events, {k: _pack(int(first), ids) for k, (first, ids) in located.items()}


def _pack(first: int, ids: Array) -> Array:
    """Connection ids of a block with the block's first row in front."""
    return np.concatenate([[first], ids]).astype(np.int64)


def _noise_blocks(
    rng: Rng, world: _World, c: dict[str, Array], direct: Array
) -> list[dict[str, Array]]:
    """Background rows that belong to no connection: failures, DNS, inbound, listeners, GETs."""
    per_dev = np.bincount(c["dev"], minlength=world.n_dev).astype(np.float64)
    out: list[dict[str, Array]] = []

    def devices(rate: Array) -> tuple[Array, Array]:
        counts = rng.poisson(rate)
        d = np.repeat(np.arange(world.n_dev, dtype=np.int32), counts)
        return d, _sample_times(rng, len(d), world, 0)

    # ConnectionFailed: to the proxy or straight to a public name
    d, t = devices(0.08 * per_dev)
    n = len(d)
    to_proxy = rng.random(n) < 0.6
    dom = np.minimum(np.searchsorted(world.dom_cdf, rng.random(n)), len(world.dom_cdf) - 1)
    out.append(
        _block(
            n, R_NOISE, NULL, ts=t, dev=d, act=A_FAILED,
            rip=np.where(to_proxy, world.dev_proxy_ip[d], world.dom_ip[dom]),
            rport=np.where(to_proxy, world.dev_proxy_port[d], world.dom_port[dom]),
            url=_null_or_empty(rng, n), lport=_ephemeral(rng, n), proto=P_TCP,
            proc=_pick_process(rng, world, d, t), af=_null_or_empty(rng, n, 0.9),
        )
    )  # fmt: skip

    # DnsConnectionInspected on inspection devices
    d, t = devices(0.45 * per_dev * world.dev_insp)
    n = len(d)
    dom = np.minimum(np.searchsorted(world.dom_cdf, rng.random(n)), len(world.dom_cdf) - 1)
    intra = world.intranet_af_dns[rng.integers(0, len(world.intranet_af_dns), n)]
    out.append(
        _block(
            n, R_NOISE, NULL, ts=t, dev=d, act=A_DNS,
            rip=world.ip_dns[rng.integers(0, len(world.ip_dns), n)], rport=53, url=NULL,
            lport=_ephemeral(rng, n), proto=P_UDP, proc=NULL,
            af=np.where(rng.random(n) < 0.7, world.dom_af_dns[dom], intra),
        )
    )  # fmt: skip

    # InboundConnectionAccepted from another workstation
    d, t = devices(0.06 * per_dev)
    n = len(d)
    out.append(
        _block(
            n, R_NOISE, NULL, ts=t, dev=d, act=A_INBOUND,
            rip=world.dev_ip[rng.integers(0, world.n_dev, n)], rport=_ephemeral(rng, n),
            url=_null_or_empty(rng, n), lport=rng.choice([445, 3389, 135, 5985], n),
            proto=P_TCP, proc=world.dev_system_proc[d], af=_null_or_empty(rng, n, 0.9),
        )
    )  # fmt: skip

    # ListeningConnectionCreated
    d, t = devices(0.04 * per_dev)
    n = len(d)
    fixed = rng.choice([5040, 7680, 49664, 49665, 49666, 49667], n)
    listen_port = np.where(rng.random(n) < 0.5, fixed, _ephemeral(rng, n))
    out.append(
        _block(
            n, R_NOISE, NULL, ts=t, dev=d, act=A_LISTEN,
            rip=world.ip_any[(rng.random(n) < 0.3).astype(np.int64)], rport=0,
            url=_null_or_empty(rng, n), lport=listen_port,
            proto=P_TCP, proc=_pick_process(rng, world, d, t), af=_null_or_empty(rng, n, 0.9),
        )
    )  # fmt: skip

    # Inspection of direct connections: plain-HTTP GETs and TLS to the real target
    on_insp = direct[world.dev_insp[c["dev"][direct]]]
    port = c["target_port"][on_insp]
    for act, mask, table in (
        (A_HTTP, port == 80, world.tgt_af_get),
        (A_SSL, port == 443, world.tgt_af_ssl),
    ):
        idx = on_insp[mask & (rng.random(len(on_insp)) < 0.6)]
        tgt = c["tgt"][idx]
        n = len(idx)
        out.append(
            _block(
                n, R_NOISE, NULL, ts=c["t"][idx] + _inspected(rng, world, c["dev"][idx], n, 0.0),
                dev=c["dev"][idx], act=act,
                rip=world.tgt_ip[tgt], rport=world.tgt_port[tgt], url=NULL, lport=c["lport"][idx],
                proto=P_TCP, proc=NULL, af=table[tgt],
            )
        )  # fmt: skip
    return out


def _bad_block(
    rng: Rng, world: _World, n_rows: int, string_hours: Array, busy_hours: Array
) -> tuple[dict[str, Array], Array]:
    """Rows that break the input contract: null DeviceId, "{not json", LocalPort "abc".

    About 1 per 50,000 rows, at least 3 on lakes of 10 devices or more. They go only into hours
    that hold at least BAD_ROWS_FILE_MIN other rows (`busy_hours`), so that one bad row is at most
    a quarter of the input suite's default 1 % per file and every sample size publishes. The
    "abc" rows are placed in hours whose file stores ports as strings, the only place such a
    value can exist. Returns the block and which of its rows lose their DeviceId.
    """
    n = round(n_rows / 50_000)
    if world.n_dev >= 10:
        n = max(n, 3)
    abc_hours = np.intersect1d(busy_hours, string_hours)
    kind = np.arange(n) % 3
    if len(busy_hours) == 0:
        kind = kind[:0]
    elif len(abc_hours) == 0:
        kind = kind[kind != 2]
    n = len(kind)
    d = rng.integers(0, world.n_dev, n).astype(np.int32)
    abc = kind == 2
    hour = np.empty(n, dtype=np.int64)
    hour[abc] = rng.choice(abc_hours, int(abc.sum()))
    hour[~abc] = rng.choice(busy_hours, int((~abc).sum()))
    t = hour * HOUR_US + rng.integers(0, HOUR_US, n)
    is_json = kind == 1
    block = _block(
        n, R_BAD, NULL, ts=t, dev=d,
        act=np.where(is_json, A_HTTP, A_SUCCESS),
        rip=np.where(is_json, world.dev_proxy_ip[d], world.ip_bad),
        rport=np.where(is_json, world.dev_proxy_port[d], 443), url=NULL,
        lport=np.where(kind == 2, PORT_ABC, _ephemeral(rng, n)), proto=P_TCP,
        proc=np.where(is_json, NULL, world.dev_system_proc[d]),
        af=np.where(is_json, world.af_bad, NULL),
    )  # fmt: skip
    return block, kind == 0


# --- ReportId -----------------------------------------------------------------------------------


def _assign_report_ids(rng: Rng, ev: _Events, world: _World, days: int) -> None:
    """A per-device counter that resets a few times a day.

    Resets happen at instants, so two events with the same (device, Timestamp) always fall in the
    same run of the counter and get distinct ReportIds: the event key stays unique.
    """
    if len(ev.ts) == 0:
        return
    n_dev = world.n_dev
    shift = 62 - max(1, int(n_dev).bit_length())
    t0 = int(ev.ts.min()) - 1
    key = (ev.dev.astype(np.int64) << shift) | (ev.ts - t0)
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    dev_sorted = ev.dev[order].astype(np.int64)

    resets = rng.integers(2, 5, n_dev) * days
    r_dev = np.repeat(np.arange(n_dev, dtype=np.int64), resets)
    r_t = world.start_us + rng.integers(0, days * DAY_US, len(r_dev))
    r_key = np.sort((r_dev << shift) | (r_t - t0))
    first_reset = np.searchsorted(r_key, np.arange(n_dev, dtype=np.int64) << shift, side="left")
    seg = np.searchsorted(r_key, key_sorted, side="right") - first_reset[dev_sorted]

    change = np.ones(len(order), dtype=bool)
    change[1:] = (dev_sorted[1:] != dev_sorted[:-1]) | (seg[1:] != seg[:-1])
    starts = np.flatnonzero(change)
    group = np.cumsum(change) - 1
    rank = np.arange(len(order)) - starts[group]
    base = rng.integers(1000, 90_000, n_dev)
    restart = rng.integers(1, 30, len(starts))
    first_value = np.where(seg[starts] == 0, base[dev_sorted[starts]], restart)
    ev.rid[order] = first_value[group] + rank


# --- writing ------------------------------------------------------------------------------------


def _take(table: pa.Array, idx: Array) -> pa.Array:
    """Strings by table index; negative indices give null."""
    return table.take(pa.array(idx, mask=idx < 0))


def _write_truth_connections(
    path: Path, world: _World, c: dict[str, Array], ev: _Events, blocks: dict[str, Array]
) -> None:
    """One row per true connection, with the key of the row that must represent it."""
    n = len(c["dev"])
    rep_row = np.full(n, NULL, dtype=np.int64)
    rep_role = np.full(n, NULL, dtype=np.int32)
    for role, code in (("np", R_NP), ("leg", R_LEG), ("direct", R_DIRECT)):  # leg wins over np
        first, ids = int(blocks[role][0]), blocks[role][1:]
        rep_row[ids] = first + np.arange(len(ids))
        rep_role[ids] = code
    has = rep_row >= 0
    safe = np.where(has, rep_row, 0)
    rep_ts = ev.ts[safe]
    domain = np.where(c["proxied"], world.dom_url[c["dom"]], c["direct_url"])
    domain = np.where(domain == EMPTY, NULL, domain)
    table = pa.table(
        {
            "conn_id": pa.array(np.arange(n, dtype=np.int64)),
            s.DEVICE_ID: _take(world.device_ids, c["dev"] + 1),
            "kind": pa.array(np.where(c["proxied"], "proxied", "direct")),
            "domain": _take(world.urls, domain),
            "target_port": pa.array(c["target_port"], type=pa.int32()),
            "leg_present": pa.array(c["leg_present"]),
            "np_present": pa.array(c["np_present"]),
            "http_present": pa.array(c["http_present"]),
            "ssl_present": pa.array(c["ssl_present"]),
            "np_portless": pa.array(c["np_portless"]),
            "np_shape2": pa.array(c["np_shape2"]),
            "np_target_portless": pa.array(c["np_target_portless"]),
            "np_throttled": pa.array(c["np_throttled"]),
            "plain_http": pa.array(c["plain"]),
            "keepalive": pa.array(c["keepalive"]),
            "mapped": pa.array(world.dev_mapped[c["dev"]]),
            "port_pool": pa.array(world.dev_pool[c["dev"]]),
            "sensor_skewed": pa.array(world.dev_skew[c["dev"]] != 0),
            "burst_id": pa.array(c["burst"], type=pa.int64()),
            "burst_size": pa.array(c["burst_size"], type=pa.int32()),
            "rep_Timestamp": pa.array(rep_ts, mask=~has, type=TS_TYPE),
            "rep_ReportId": pa.array(ev.rid[safe], mask=~has, type=pa.int64()),
            "rep_role": _take(pa.array(ROLES), rep_role),
            "rep_date": pa.array(rep_ts // DAY_US, mask=~has, type=pa.int32()).cast(pa.date32()),
        }
    )
    pq.write_table(table, path, compression="zstd")


def _write_lake(
    rng: Rng,
    root: Path,
    truth_events: Path,
    world: _World,
    ev: _Events,
    string_hours: Array,
    shapes: Shapes,
    say: Callable[[str], None],
) -> tuple[int, int]:
    """Write one file per hour from one time-sorted index, and the events truth alongside.

    Each hour's file is written by one of several writers (`_writer`); some hours are exported
    a second time by Log Analytics (`_log_analytics`), repeating some of their events."""
    n = len(ev.ts)
    candidates = np.flatnonzero(ev.role != R_BAD)
    dups = rng.choice(candidates, round(0.003 * n), replace=False)
    rows = np.concatenate([np.arange(n), dups])
    copy = np.concatenate([np.zeros(n, dtype=bool), np.ones(len(dups), dtype=bool)])
    order = np.argsort(ev.ts[rows], kind="stable")
    rows, copy = rows[order], copy[order]
    hour = ev.ts[rows] // HOUR_US
    bounds = np.flatnonzero(np.diff(hour)) + 1
    starts = np.concatenate([[0], bounds]) if len(rows) else bounds
    ends = np.concatenate([bounds, [len(rows)]]) if len(rows) else bounds
    string_set = set(string_hours.tolist())
    actions = pa.array(ACTIONS)
    roles = pa.array(ROLES)
    truth_schema = pa.schema(
        [
            (s.DEVICE_ID, pa.string()),
            (s.TIMESTAMP, TS_TYPE),
            (s.REPORT_ID, pa.int64()),
            (s.ACTION_TYPE, pa.string()),
            ("conn_id", pa.int64()),
            ("role", pa.string()),
        ]
    )
    with pq.ParquetWriter(truth_events, truth_schema, compression="zstd") as writer:
        for i, (lo, hi) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            h = int(hour[lo])
            when = dt.datetime.fromtimestamp(h * 3600, tz=dt.UTC)
            folder = root / f"date={when:%Y-%m-%d}" / f"hour={when:%H}"
            folder.mkdir(parents=True, exist_ok=True)
            idx = rows[lo:hi]
            writer_of = "string_ports" if h in string_set else _writer(rng, shapes)
            table = _hour_table(world, ev, idx, actions, writer=writer_of)
            pq.write_table(table, folder / "part-0.parquet", compression="zstd")
            if rng.random() < shapes.log_analytics:
                again = idx[(ev.role[idx] != R_BAD) & (rng.random(len(idx)) < 0.05)]
                again_table = _log_analytics(_hour_table(world, ev, again, actions))
                pq.write_table(again_table, folder / "part-1.parquet", compression="zstd")
            first = idx[~copy[lo:hi]]
            writer.write_table(
                pa.table(
                    {
                        s.DEVICE_ID: _take(world.device_ids, _device_id_codes(ev, first)),
                        s.TIMESTAMP: pa.array(ev.ts[first], type=TS_TYPE),
                        s.REPORT_ID: pa.array(ev.rid[first], type=pa.int64()),
                        s.ACTION_TYPE: actions.take(pa.array(ev.act[first])),
                        "conn_id": pa.array(ev.conn[first], mask=ev.conn[first] < 0),
                        "role": roles.take(pa.array(ev.role[first])),
                    },
                    schema=truth_schema,
                )
            )
            if (i + 1) % 12 == 0:
                say(f"hour files: {i + 1}/{len(starts)}")
    return len(rows), len(starts)


def _device_id_codes(ev: _Events, idx: Array) -> Array:
    """DeviceId table codes, null for the rows that deliberately lack one."""
    return np.where(ev.devid_null[idx], NULL, ev.dev[idx] + 1)


def _mixed(codes: Array, mix: Array) -> Array:
    """Blank a string now and then, as null or as "", the way real exports do."""
    return np.where(mix == 1, NULL, np.where(mix == 2, EMPTY, codes))


# How an hour file was written: the common writer, or one of the others real lakes mix in.
WRITERS: Final = ("int64_ports", "ns_timestamps", "kusto_text", "fewer_columns")


def _writer(rng: Rng, shapes: Shapes) -> str:
    """The writer of one hour file: another than the common one at the schema-drift rate."""
    if rng.random() >= shapes.schema_drift:
        return "common"
    return str(WRITERS[int(rng.integers(0, len(WRITERS)))])


def _hour_table(
    world: _World, ev: _Events, idx: Array, actions: pa.Array, *, writer: str = "common"
) -> pa.Table:
    """Materialise the rows of one hour file with the advanced-hunting columns, typed as
    `writer` types them: text ports (`string_ports`, where the "abc" rows live), int64 ports,
    nanosecond timestamps, Kusto's text timestamps, or no InitiatingProcessAccountName."""
    dev = ev.dev[idx]
    proc = ev.proc[idx]
    has_proc = proc >= 0
    p = np.where(has_proc, proc, 0)
    rport: pa.Array = pa.array(ev.rport[idx], type=pa.int32())
    lport_codes = ev.lport[idx]
    lport: pa.Array = pa.array(lport_codes, mask=lport_codes < 0, type=pa.int32())
    if writer == "string_ports":
        rport = rport.cast(pa.string())
        lport = pc.if_else(pa.array(lport_codes == PORT_ABC), "abc", lport.cast(pa.string()))
    elif writer == "int64_ports":
        rport, lport = rport.cast(pa.int64()), lport.cast(pa.int64())
    names = pa.array(PROCESS_NAMES)
    # Process events of a device with IPv4-mapped sockets show ::ffff:a.b.c.d.
    mapped = pa.array(has_proc & world.dev_mapped[dev])
    remote_ip = pc.if_else(
        mapped, _take(world.mapped_ips, ev.rip[idx]), _take(world.ips, ev.rip[idx])
    )
    table = pa.table(
        {
            s.TIMESTAMP: pa.array(ev.ts[idx], type=TS_TYPE),
            s.DEVICE_ID: _take(world.device_ids, _device_id_codes(ev, idx)),
            s.DEVICE_NAME: _take(world.device_names, _mixed(dev + 1, ev.name_mix[idx])),
            s.ACTION_TYPE: actions.take(pa.array(ev.act[idx])),
            s.REMOTE_IP: remote_ip,
            s.REMOTE_PORT: rport,
            s.REMOTE_URL: _take(world.urls, ev.url[idx]),
            s.LOCAL_IP: _take(world.ips, world.dev_ip[dev]),
            s.LOCAL_PORT: lport,
            s.PROTOCOL: pa.array(PROTOCOLS).take(pa.array(ev.proto[idx])),
            s.PROCESS_ID: pa.array(np.where(has_proc, world.proc_pid[p], 0), type=pa.int64()),
            s.PROCESS_CREATION: pa.array(world.proc_created[p], mask=~has_proc, type=TS_TYPE),
            s.PROCESS_FILE_NAME: _take(names, np.where(has_proc, world.proc_name[p], NULL)),
            "InitiatingProcessAccountName": _take(
                world.accounts,
                np.where(has_proc, _mixed(world.proc_account[p], ev.account_mix[idx]), NULL),
            ),
            s.REPORT_ID: pa.array(ev.rid[idx], type=pa.int64()),
            s.ADDITIONAL_FIELDS: _take(world.afs, ev.af[idx]),
        }
    )
    stamps = [s.TIMESTAMP, s.PROCESS_CREATION]
    if writer == "ns_timestamps":
        for name in stamps:
            column = table[name].cast(pa.timestamp("ns", tz="UTC"))
            table = table.set_column(table.schema.get_field_index(name), name, column)
    elif writer == "kusto_text":
        for name in stamps:
            text = pc.strftime(table[name], format=KUSTO_TIME, locale="C")
            table = table.set_column(table.schema.get_field_index(name), name, text)
    elif writer == "fewer_columns":
        table = table.drop_columns(["InitiatingProcessAccountName"])
    return table


LOG_ANALYTICS_COLUMNS: Final = ("TenantId", "SourceSystem", "MachineGroup", "TimeGenerated", "Type")
# Kusto's text timestamps: seven fractional digits and Z (Arrow's %S of a µs timestamp gives six).
KUSTO_TIME: Final = "%Y-%m-%dT%H:%M:%S0Z"


def _log_analytics(table: pa.Table) -> pa.Table:
    """The same events as Log Analytics exports them: its own columns added, one optional
    column fewer, and JSON text spaced otherwise."""
    n = table.num_rows
    generated = pc.add(table[s.TIMESTAMP], pa.scalar(dt.timedelta(minutes=3)))
    spaced = pc.replace_substring(table[s.ADDITIONAL_FIELDS], pattern='","', replacement='", "')
    table = table.drop_columns([s.PROCESS_FILE_NAME])
    table = table.set_column(
        table.schema.get_field_index(s.ADDITIONAL_FIELDS), s.ADDITIONAL_FIELDS, spaced
    )
    extra = {
        "TenantId": pa.array(["72f988bf-86f1-41af-91ab-2d7cd011db47"] * n),
        "SourceSystem": pa.array([""] * n),
        "MachineGroup": pa.array(["Workstations"] * n),
        "TimeGenerated": pc.strftime(generated, format=KUSTO_TIME, locale="C"),
        "Type": pa.array(["DeviceNetworkEvents"] * n),
    }
    for name in LOG_ANALYTICS_COLUMNS:
        table = table.append_column(name, extra[name])
    return table
