"""The world: devices, processes, destinations and the string tables the event codes index."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa

from proxylink.jobs.sample.codes import DAY_US, INT64_MAX, NULL, US, Array, Rng
from proxylink.jobs.sample.spec import SampleSpec

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
class World:
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


def build_world(rng: Rng, spec: SampleSpec) -> World:
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
    rates = spec.rates
    kinds = np.where(rng.random(n) < rates.workstation, "ws", "lt")
    device_names = ["", *(f"{k}-{i:04d}.corp.contoso.com" for i, k in enumerate(kinds))]
    host = np.arange(n)
    dev_ip = ips.add([f"10.{1 + h // 62500}.{h // 250 % 250}.{h % 250 + 2}" for h in host.tolist()])
    proxy_ip = ips.add([ip for ip, _ in spec.proxies])
    proxy_port = np.array([port for _, port in spec.proxies], dtype=np.int32)
    proxy_of = rng.integers(0, len(spec.proxies), n)
    shapes = spec.shapes
    dev_np = rng.random(n) < rates.network_protection
    dev_insp = dev_np & (rng.random(n) < rates.inspection)
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
    has_succ = rng.random(n_slots) < rates.pid_reused
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
    upper = np.flatnonzero(rng.random(nd) < rates.mixed_case_name)
    if len(upper) == 0:
        upper = np.array([min(5, nd - 1)])
    upper_names = [
        names[i].upper() if j % 2 else ".".join(p.capitalize() for p in names[i].split("."))
        for j, i in enumerate(upper.tolist())
    ]
    dom_upper_url = np.full(nd, NULL, dtype=np.int32)
    dom_upper_url[upper] = urls.add(upper_names)
    dom_ip = ips.add(_public_ips(rng, nd))
    dom_port = np.where(rng.random(nd) < rates.port_8443, 8443, 443).astype(np.int32)
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
            np.where(rng.random(N_PUBLIC_DIRECT) < rates.direct_https, 443, 80),
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

    return World(
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
