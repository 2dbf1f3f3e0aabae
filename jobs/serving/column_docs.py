"""What the published tables and their columns mean, for catalogs that show comments.

The texts of `connection_success`'s added columns are the column table of docs/tables.md
verbatim (markdown backticks dropped); a test keeps the two the same. A table or column without an
entry simply gets no comment.
"""

from __future__ import annotations

from proxylink.jobs.nightly.publish import CURATED_TABLE, REJECTS_TABLE
from proxylink.transforms.aggregates import DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE

TABLE_DOCS: dict[str, str] = {
    CURATED_TABLE: (
        "One row per connection that succeeded on the UTC day of its Timestamp, with the real "
        "destination of proxied connections attached; unique by (DeviceId, Timestamp, "
        "ReportId). Published by proxylink, partitioned by date."
    ),
    REJECTS_TABLE: (
        "Rows of DeviceNetworkEvents that broke the input contract, as they were read, each "
        "with its reason. Published by proxylink, partitioned by date."
    ),
    DOMAIN_DAILY_TABLE: (
        "One row per date and RemoteUrl over the connections whose destination is known, "
        "computed from connection_success. Published by proxylink, partitioned by date."
    ),
    PROXY_COVERAGE_TABLE: (
        "One row per date and device: proxy legs by link outcome, evidence events and whether "
        "network protection shows (Status). Published by proxylink, partitioned by date."
    ),
}

_PARTITION = "partition column"

COLUMN_DOCS: dict[str, dict[str, str]] = {
    CURATED_TABLE: {
        # source columns keep their advanced-hunting meaning
        "Timestamp": "when Defender recorded the connection (UTC)",
        "DeviceId": "Defender's device id",
        "DeviceName": "the device's fully qualified name",
        "ActionType": "always ConnectionSuccess",
        "RemoteIP": "the address the socket connected to; the proxy for a proxied row",
        "RemotePort": "the port the socket connected to; the proxy's port for a proxied row",
        "LocalIP": "the device's address of the socket",
        "LocalPort": "the device's port of the socket",
        "Protocol": "the transport protocol",
        "InitiatingProcessId": "the process that opened the connection",
        "InitiatingProcessCreationTime": "when that process started (with its id, the process)",
        "ReportId": "Defender's event id; unique per device together with Timestamp",
        "AdditionalFields": "the event's extra fields as JSON text",
        # added or redefined by proxylink (docs/tables.md: The curated table)
        "RemoteUrl": (
            "the real destination domain where known: the row's own, or the linked evidence's; "
            "lower case, without scheme, path or port, an internationalised name as IDNA "
            "(xn--) labels; never a value that is not a host name"
        ),
        "IsProxied": "the socket went to a configured proxy",
        "ProxyIP": "the proxy; null for a direct row",
        "ProxyPort": "the proxy; null for a direct row",
        "TargetPort": (
            "the real destination port where known: from CONNECT host:443, from a plain-HTTP "
            "request's absolute URI (80 by default), from a network-protection row that shows "
            "the real target, or RemotePort of a direct row"
        ),
        "LinkMethod": "direct, socket, process, evidence_only or unlinked",
        "LinkDeltaMs": (
            "evidence time minus leg time in ms (truncated toward zero); null when not linked"
        ),
        "EvidenceSource": (
            "the ActionType of the evidence used (network protection's ConnectionSuccess is "
            "preferred, then a CONNECT's HttpConnectionInspected, then SslConnectionInspected, "
            "then a plain-HTTP request's HttpConnectionInspected)"
        ),
        "EvidenceReportId": "the ReportId of that evidence",
        "RequestHosts": (
            "for a leg whose socket carried plain-HTTP requests (no CONNECT): how many distinct "
            "hosts they named within the tolerance; RemoteUrl is the first request's host "
            "unless other evidence names it; null otherwise"
        ),
        "RemoteUrlRaw": (
            "the row's own RemoteUrl as exported, where it is not a host name (a space, a "
            "script URL, a control byte, a label over 63 or a name over 253 bytes), which "
            "RemoteUrl then does not carry; null otherwise"
        ),
        "date": _PARTITION,
    },
    REJECTS_TABLE: {
        "RejectReason": "why the row broke the input contract (e.g. bad_RemotePort)",
        "SourceFile": "the input file the row came from",
        "DeviceId": "the row's DeviceId as read",
        "Timestamp": "the row's Timestamp as read",
        "ReportId": "the row's ReportId as read",
        "ActionType": "the row's ActionType as text",
        "Record": "the whole row as JSON",
        "date": _PARTITION,
    },
    DOMAIN_DAILY_TABLE: {
        "RemoteUrl": "the destination domain",
        "RegisteredDomain": (
            "eTLD+1 from the Public Suffix List (private section included); null for an IP "
            "address or a bare public suffix"
        ),
        "Devices": "distinct DeviceIds that reached it",
        "Connections": "curated rows naming it",
        "ProxiedConnections": "how many of those went through a proxy",
        "ProxiedShare": "ProxiedConnections / Connections",
        "FirstSeen": "first Timestamp that day",
        "LastSeen": "last Timestamp that day",
        "TopProcesses": (
            "up to five InitiatingProcessFileNames (lower case) with the most connections, "
            "most first"
        ),
        "date": _PARTITION,
    },
    PROXY_COVERAGE_TABLE: {
        "DeviceId": "Defender's device id",
        "DeviceName": "the last name the device had that day",
        "Connections": "its curated rows",
        "ProxyLegs": "its connections to a proxy: LinkedSocket + LinkedProcess + Unlinked",
        "LinkedSocket": "legs linked on their socket",
        "LinkedProcess": "legs linked on their process",
        "Unlinked": "legs without usable evidence",
        "EvidenceOnly": "network-protection rows standing for a connection whose leg is missing",
        "DirectConnections": "connections that did not go through a proxy",
        "EvidenceEvents": (
            "its evidence rows of the day (network protection, CONNECT and TLS inspection), "
            "folded, standing alone or unmatched"
        ),
        "LinkRate": "(LinkedSocket + LinkedProcess) / ProxyLegs; null without proxy legs",
        "Status": (
            "protected: evidence present; blind: proxy legs but no evidence (network "
            "protection probably off); direct-only: neither"
        ),
        "date": _PARTITION,
    },
}
