"""What to generate: the spec, the base rates of the world and the messy shapes of real exports.

Every probability the generator draws with is a field here, so a lake is described by its spec
and seed alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields, replace


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
class Rates:
    """The base rates of the generated world: how a clean export looks, before the `Shapes`.

    Each is a probability (or, for the background rows, a count per true connection of the
    device). The defaults are what the truth and link tests are measured on; change them through
    `SampleSpec(rates=Rates(...))`, never in the generator's code.
    """

    # devices
    workstation: float = 0.7  # devices named as workstations (ws-), the others laptops (lt-)
    network_protection: float = 0.8  # devices with network protection on
    inspection: float = 0.7  # ... of those, with the network-inspection sensor as well
    # processes
    pid_reused: float = 0.04  # process slots whose PID a later process takes over in the window
    # destinations
    mixed_case_name: float = 0.01  # proxied domains that also appear in mixed case
    port_8443: float = 0.02  # proxied domains served on 8443 rather than 443
    direct_https: float = 0.75  # public direct destinations on 443 rather than 80
    # connections: bursts of one process
    burst_geometric: float = 0.45  # p of the geometric number of connections in a burst (max 8)
    proxied: float = 0.85  # bursts through the proxy
    one_destination: float = 0.7  # bursts to one destination (the others pick from 2 to 4)
    # which rows a connection leaves
    np_row: float = 0.99  # a network-protection row, on a device with network protection
    http_row: float = 0.92  # an HttpConnectionInspected row, on a device with inspection
    ssl_row: float = 0.85  # an SslConnectionInspected row, for an HTTPS connection
    missing_leg: float = 0.01  # the proxy leg is missing although evidence exists
    direct_named: float = 0.85  # a direct connection to a named target carries its RemoteUrl
    # the background, per true connection of the device
    failed_per_connection: float = 0.08  # ConnectionFailed
    dns_per_connection: float = 0.45  # DnsConnectionInspected (devices with inspection)
    inbound_per_connection: float = 0.06  # InboundConnectionAccepted
    listening_per_connection: float = 0.04  # ListeningConnectionCreated
    # writing
    exact_duplicates: float = 0.003  # rows written twice, byte for byte


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
    rates: Rates = Rates()
