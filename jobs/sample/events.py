"""The events: true connections, then the rows Defender writes for them (legs, network
protection, inspection, direct, noise and bad rows), as integer codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from proxylink.jobs.sample.codes import (
    A_DNS,
    A_FAILED,
    A_HTTP,
    A_INBOUND,
    A_LISTEN,
    A_SSL,
    A_SUCCESS,
    BAD_ROWS_FILE_MIN,
    BURST_SPREAD_US,
    DAY_US,
    EMPTY,
    EPHEMERAL_LO,
    EPHEMERAL_SPAN,
    HOUR_US,
    INSPECTION_REACH_US,
    MAX_OFFSET_US,
    NULL,
    P_TCP,
    P_UDP,
    PORT_ABC,
    PORT_POOL,
    R_BAD,
    R_DIRECT,
    R_HTTP,
    R_LEG,
    R_NOISE,
    R_NP,
    R_SSL,
    US,
    Array,
    Rng,
)
from proxylink.jobs.sample.spec import Rates, SampleSpec, Shapes
from proxylink.jobs.sample.world import World


@dataclass
class Events:
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


_MINUTE_CDF: Final = (lambda w: np.cumsum(w) / w.sum())(
    0.08
    + np.exp(-0.5 * ((np.arange(1440) / 60.0 - 10.0) / 2.2) ** 2)
    + 0.8 * np.exp(-0.5 * ((np.arange(1440) / 60.0 - 14.5) / 2.0) ** 2)
    + 0.15 * np.exp(-0.5 * ((np.arange(1440) / 60.0 - 20.0) / 1.5) ** 2)
)


def _sample_times(rng: Rng, n: int, world: World, margin_us: int) -> Array:
    """Times in [start, end - margin) with a working-day shape (UTC)."""
    days = (world.end_us - world.start_us) // DAY_US
    day = rng.integers(0, days, n)
    minute = np.minimum(np.searchsorted(_MINUTE_CDF, rng.random(n), side="right"), 1439)
    t = world.start_us + day * DAY_US + minute * 60 * US + rng.integers(0, 60 * US, n)
    return np.minimum(t, world.end_us - margin_us - 1).astype(np.int64)


def _pick_process(rng: Rng, world: World, dev: Array, t: Array) -> Array:
    """A process of each device alive at t, chatty images more often (vectorised)."""
    lo = world.slot_cum[world.slot_off[dev]]
    hi = world.slot_cum[world.slot_off[dev] + world.slot_count[dev]]
    target = lo + rng.random(len(dev)) * (hi - lo)
    slot = np.searchsorted(world.slot_cum, target, side="right") - 1
    slot = np.clip(slot, world.slot_off[dev], world.slot_off[dev] + world.slot_count[dev] - 1)
    return np.where(t >= world.slot_succ_time[slot], world.slot_succ_proc[slot], slot)


def build_connections(rng: Rng, spec: SampleSpec, world: World) -> dict[str, Array]:
    """Bursts of connections from one process, each with its socket, kind and destination."""
    rates = spec.rates
    p = rates.burst_geometric
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
    b_proxied = rng.random(n_burst) < rates.proxied
    b_doms = np.searchsorted(world.dom_cdf, rng.random((n_burst, 4)), side="right")
    b_doms = np.minimum(b_doms, len(world.dom_cdf) - 1)
    b_tgts = np.minimum(
        np.searchsorted(world.tgt_cdf, rng.random((n_burst, 4)), side="right"),
        len(world.tgt_cdf) - 1,
    )
    b_mix = np.where(rng.random(n_burst) < rates.one_destination, 1, rng.integers(2, 5, n_burst))
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
    np_present = on_np & (rng.random(n) < rates.np_row)
    # A busy process: a repeated connection of a burst to one domain is throttled out of
    # network protection's events now and then.
    _, first_of = np.unique(burst.astype(np.int64) * (1 << 20) + dom, return_index=True)
    repeat = np.ones(n, dtype=bool)
    repeat[first_of] = False
    np_throttled = np_present & repeat & (rng.random(n) < shapes.np_throttle)
    np_present &= ~np_throttled
    http_present = on_insp & (rng.random(n) < rates.http_row)
    ssl_present = on_insp & ~plain & (rng.random(n) < rates.ssl_row)
    evidence = np_present | http_present | ssl_present
    leg_present = ~(on_np & evidence & (rng.random(n) < rates.missing_leg))
    np_shape2 = np_present & world.dev_shape2[dev]
    np_target_portless = np_shape2 & (rng.random(n) < shapes.target_ip_portless)
    np_portless = np_present & ~np_shape2 & (rng.random(n) < shapes.portless_np)
    named = world.tgt_url[tgt] != NULL
    direct_url = np.where(
        named & (rng.random(n) < rates.direct_named), world.tgt_url[tgt], rng.integers(-1, 1, n)
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


def _offsets(rng: Rng, n: int, late: float = 0.0) -> Array:
    """Evidence time minus leg time: mostly sub-second, sometimes seconds, a quarter before;
    a `late` share 2-4.5 s after."""
    small = np.minimum(rng.exponential(0.18 * US, n), 1.5 * US)
    large = rng.uniform(0.5 * US, 3.0 * US, n)
    mag = np.minimum(np.where(rng.random(n) < 0.85, small, large), MAX_OFFSET_US)
    sign = np.where(rng.random(n) < 0.25, -1, 1)
    lag = np.where(rng.random(n) < late, rng.uniform(2.0 * US, 4.5 * US, n), sign * mag)
    return lag.astype(np.int64)


def _inspected(rng: Rng, world: World, dev: Array, n: int, late: float) -> Array:
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


def string_port_hours(rng: Rng, world: World, days: int, drift: float) -> Array:
    """Hour numbers (since the epoch) whose file stores ports as strings: about 1 in 12, none
    without schema drift."""
    if drift <= 0:
        return np.zeros(0, dtype=np.int64)
    hours = world.start_us // HOUR_US + np.arange(days * 24)
    chosen = hours[rng.random(len(hours)) < 1 / 12]
    if len(chosen) == 0:
        chosen = hours[rng.integers(0, len(hours), 1)]
    return chosen.astype(np.int64)


def build_events(
    rng: Rng,
    world: World,
    c: dict[str, Array],
    string_hours: Array,
    shapes: Shapes,
    rates: Rates,
) -> tuple[Events, dict[str, Array]]:
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

    blocks.extend(_noise_blocks(rng, world, c, direct, rates))
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
    events = Events(
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
    rng: Rng, world: World, c: dict[str, Array], direct: Array, rates: Rates
) -> list[dict[str, Array]]:
    """Background rows that belong to no connection: failures, DNS, inbound, listeners, GETs."""
    per_dev = np.bincount(c["dev"], minlength=world.n_dev).astype(np.float64)
    out: list[dict[str, Array]] = []

    def devices(rate: Array) -> tuple[Array, Array]:
        counts = rng.poisson(rate)
        d = np.repeat(np.arange(world.n_dev, dtype=np.int32), counts)
        return d, _sample_times(rng, len(d), world, 0)

    # ConnectionFailed: to the proxy or straight to a public name
    d, t = devices(rates.failed_per_connection * per_dev)
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
    d, t = devices(rates.dns_per_connection * per_dev * world.dev_insp)
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
    d, t = devices(rates.inbound_per_connection * per_dev)
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
    d, t = devices(rates.listening_per_connection * per_dev)
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
    rng: Rng, world: World, n_rows: int, string_hours: Array, busy_hours: Array
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


def assign_report_ids(rng: Rng, ev: Events, world: World, days: int) -> None:
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
