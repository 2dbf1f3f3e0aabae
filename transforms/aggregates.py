"""The contract of the two summary tables every run publishes next to `connection_success`.

`domain_daily`: one row per date and `RemoteUrl` among the day's connections whose destination
is known (direct rows with a name, linked legs, evidence-only rows). Unlinked legs have no
domain and appear only in `proxy_coverage`.

`proxy_coverage`: one row per date and device seen that day (a connection or an evidence row).
Its `Status` is the list an administrator needs to turn network protection on:
`protected` (the device produced evidence), `blind` (proxy legs but no evidence at all, so
network protection is probably off) or `direct-only` (no proxy legs and no evidence).

The link core computes both (`transforms/polars_engine/aggregates.py`): `proxy_coverage` is
local to a device and `domain_daily` merges from per-part partials, so the Spark runner computes
them exactly on its partitions.
"""

from __future__ import annotations

from typing import Final

from proxylink.transforms import schema as s

DOMAIN_DAILY_TABLE: Final = "domain_daily"
PROXY_COVERAGE_TABLE: Final = "proxy_coverage"
SUMMARY_TABLES: Final = (DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE)

# domain_daily
REGISTERED_DOMAIN: Final = "RegisteredDomain"
DEVICES: Final = "Devices"
CONNECTIONS: Final = "Connections"
PROXIED_CONNECTIONS: Final = "ProxiedConnections"
PROXIED_SHARE: Final = "ProxiedShare"
FIRST_SEEN: Final = "FirstSeen"
LAST_SEEN: Final = "LastSeen"
TOP_PROCESSES: Final = "TopProcesses"
TOP_PROCESSES_N: Final = 5

# proxy_coverage
PROXY_LEGS: Final = "ProxyLegs"
LINKED_SOCKET: Final = "LinkedSocket"
LINKED_PROCESS: Final = "LinkedProcess"
UNLINKED: Final = "Unlinked"
EVIDENCE_ONLY: Final = "EvidenceOnly"
DIRECT_CONNECTIONS: Final = "DirectConnections"
EVIDENCE_EVENTS: Final = "EvidenceEvents"
LINK_RATE: Final = "LinkRate"
STATUS: Final = "Status"
STATUS_PROTECTED: Final = "protected"
STATUS_BLIND: Final = "blind"
STATUS_DIRECT_ONLY: Final = "direct-only"
STATUSES: Final = (STATUS_PROTECTED, STATUS_BLIND, STATUS_DIRECT_ONLY)

# A RemoteUrl that is an address, not a name, or has an empty label, has no registered domain.
NOT_A_NAME: Final = r"^(?:\d{1,3}(?:\.\d{1,3}){3}|.*:.*|\..*|.*\.|.*\.\..*)$"

# The tables' columns in order; both engines select exactly these.
DOMAIN_DAILY_COLUMNS: Final = (
    s.PARTITION_DATE,
    s.REMOTE_URL,
    REGISTERED_DOMAIN,
    DEVICES,
    CONNECTIONS,
    PROXIED_CONNECTIONS,
    PROXIED_SHARE,
    FIRST_SEEN,
    LAST_SEEN,
    TOP_PROCESSES,
)
PROXY_COVERAGE_COLUMNS: Final = (
    s.PARTITION_DATE,
    s.DEVICE_ID,
    s.DEVICE_NAME,
    CONNECTIONS,
    PROXY_LEGS,
    LINKED_SOCKET,
    LINKED_PROCESS,
    UNLINKED,
    EVIDENCE_ONLY,
    DIRECT_CONNECTIONS,
    EVIDENCE_EVENTS,
    LINK_RATE,
    STATUS,
)
