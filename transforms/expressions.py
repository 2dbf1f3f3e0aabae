"""How the rules that the link core and the expectations share are tested on a polars column.

The rules themselves are data (`transforms.schema`, `transforms.params.ProxyMatch`); this is
the one evaluation of them, so that an expectation checks exactly what the core decided by.
"""

from __future__ import annotations

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms.params import ProxyMatch, ProxyRule


def is_host_name(name: pl.Expr) -> pl.Expr:
    """`s.HOST_NAME_PATTERN` within the DNS length limit (polars' regular expressions have no
    lookahead, so the length is its own test)."""
    return name.str.contains(s.HOST_NAME_PATTERN) & (name.str.len_bytes() <= s.MAX_HOST_NAME_BYTES)


def normalise_ip(expr: pl.Expr) -> pl.Expr:
    """IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is the IPv4 address for proxy matching."""
    return expr.str.strip_chars().str.to_lowercase().str.replace(r"^::ffff:", "")


def _ipv4_int(expr: pl.Expr) -> pl.Expr:
    parts = expr.str.split_exact(".", 3)
    octets = [parts.struct.field(f"field_{i}").cast(pl.Int64, strict=False) for i in range(4)]
    value = ((octets[0] * 256 + octets[1]) * 256 + octets[2]) * 256 + octets[3]
    in_range = pl.all_horizontal([(o >= 0) & (o <= 255) for o in octets])
    return pl.when(in_range).then(value)


def proxy_match(ip: pl.Expr, port: pl.Expr, proxies: tuple[ProxyRule, ...]) -> pl.Expr:
    """True where (ip, port) is a configured proxy; never null."""
    plan = ProxyMatch.of(proxies)
    conds: list[pl.Expr] = []
    if plan.any_port:
        conds.append(ip.is_in(plan.any_port))
    for texts, rule_port in plan.with_port:
        conds.append(ip.is_in(texts) & (port == rule_port))
    if plan.ranges:
        as_int = _ipv4_int(normalise_ip(ip))
        for lo, hi, range_port in plan.ranges:
            cond = as_int.is_between(lo, hi)
            conds.append(cond if range_port is None else cond & (port == range_port))
    if not conds:
        return pl.lit(False)
    return pl.any_horizontal(conds).fill_null(False)
