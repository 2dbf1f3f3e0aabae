"""Typed parameters that the transforms take: the link settings and the day being built.

They are frozen so that one run cannot change them half way, and they carry no paths or clock:
the job decides them and hands them in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True)
class ProxyRule:
    """One proxy: an IPv4/IPv6 address or network, and optionally the one port that counts."""

    network: str
    port: int | None = None

    @property
    def net(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.network, strict=False)

    @property
    def is_single_address(self) -> bool:
        return self.net.num_addresses == 1

    def __str__(self) -> str:
        net = self.net
        host = str(net.network_address) if self.is_single_address else str(net)
        if self.port is None:
            return host
        return f"[{host}]:{self.port}" if net.version == 6 else f"{host}:{self.port}"


@dataclass(frozen=True)
class ProxyMatch:
    """The proxy rules split the way both engines test them.

    Single addresses compare the text as exported (plain or IPv4-mapped), which avoids rewriting
    every row's address; only networks need the address as a number.
    """

    any_port: tuple[str, ...]  # spellings of addresses where any port counts
    with_port: tuple[tuple[tuple[str, ...], int], ...]  # (spellings, port)
    ranges: tuple[tuple[int, int, int | None], ...]  # IPv4 (first, last, port or None)

    @classmethod
    def of(cls, proxies: tuple[ProxyRule, ...]) -> ProxyMatch:
        any_port: list[str] = []
        with_port: list[tuple[tuple[str, ...], int]] = []
        ranges: list[tuple[int, int, int | None]] = []
        for rule in proxies:
            net = rule.net
            if not rule.is_single_address:
                assert isinstance(net, ipaddress.IPv4Network)  # parse_proxy refuses IPv6 nets
                ranges.append((int(net.network_address), int(net.broadcast_address), rule.port))
            elif rule.port is None:
                any_port.extend(spellings(rule))
            else:
                with_port.append((spellings(rule), rule.port))
        return cls(tuple(any_port), tuple(with_port), tuple(ranges))


def spellings(rule: ProxyRule) -> tuple[str, ...]:
    """The texts one proxy address appears as in exports: plain and IPv4-mapped."""
    addr = str(rule.net.network_address)
    if rule.net.version == 4:
        return (addr, f"::ffff:{addr}", f"::FFFF:{addr}")
    return (addr, addr.upper())


def parse_proxy(text: str) -> ProxyRule:
    """Parse `IP`, `IP:PORT`, `CIDR`, `CIDR:PORT` or `[IPv6]:PORT`; raise ValueError with why."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty proxy")
    host, port_text = raw, None
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError(f"proxy {text!r}: missing ']'")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"proxy {text!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"proxy {text!r}: port must be 1..65535")
        port = int(port_text)
    try:
        net = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(f"proxy {text!r}: {host!r} is not an IP address or CIDR network") from None
    if net.version == 6 and net.num_addresses > 1:
        raise ValueError(f"proxy {text!r}: IPv6 networks are not supported; list the addresses")
    return ProxyRule(network=str(net), port=port)


@dataclass(frozen=True)
class LinkParams:
    """How legs are recognised and linked; the tolerance applies on both sides of the leg."""

    proxies: tuple[ProxyRule, ...]
    tolerance_ms: int = 5_000
    clock_skew_ms: int = 300_000

    def __post_init__(self) -> None:
        if self.tolerance_ms <= 0:
            raise ValueError("tolerance must be positive")
        if self.clock_skew_ms < 0:
            raise ValueError("clock skew must not be negative")


@dataclass(frozen=True)
class DayWindow:
    """Day D and the context around it that linking needs.

    Legs within two tolerances of midnight can compete with day-D legs for the same evidence,
    so the context reaches two tolerances beyond the day, plus the clock skew that partitions
    may carry.
    """

    day: date
    start: datetime
    end: datetime
    context_start: datetime
    context_end: datetime

    @classmethod
    def for_day(cls, day: date, params: LinkParams) -> DayWindow:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1)
        margin = timedelta(milliseconds=2 * params.tolerance_ms)
        return cls(day, start, end, start - margin, end + margin)
