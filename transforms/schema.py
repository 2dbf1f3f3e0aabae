"""Column names and value sets of the input and curated contracts.

Both engines and every job import these names, so a contract change happens in one place.
"""

from __future__ import annotations

from typing import Final

# --- input contract (Defender advanced-hunting names) -------------------------------------
TIMESTAMP: Final = "Timestamp"
DEVICE_ID: Final = "DeviceId"
DEVICE_NAME: Final = "DeviceName"
ACTION_TYPE: Final = "ActionType"
REMOTE_IP: Final = "RemoteIP"
REMOTE_PORT: Final = "RemotePort"
REMOTE_URL: Final = "RemoteUrl"
LOCAL_IP: Final = "LocalIP"
LOCAL_PORT: Final = "LocalPort"
PROTOCOL: Final = "Protocol"
PROCESS_ID: Final = "InitiatingProcessId"
PROCESS_CREATION: Final = "InitiatingProcessCreationTime"
REPORT_ID: Final = "ReportId"
ADDITIONAL_FIELDS: Final = "AdditionalFields"
# Optional: carried through when the lake has it; the aggregates use it when present.
PROCESS_FILE_NAME: Final = "InitiatingProcessFileName"

REQUIRED_COLUMNS: Final = (
    TIMESTAMP,
    DEVICE_ID,
    DEVICE_NAME,
    ACTION_TYPE,
    REMOTE_IP,
    REMOTE_PORT,
    REMOTE_URL,
    LOCAL_IP,
    LOCAL_PORT,
    PROTOCOL,
    PROCESS_ID,
    PROCESS_CREATION,
    REPORT_ID,
    ADDITIONAL_FIELDS,
)

# An event is unique by this key; ReportId alone repeats, even within one device.
EVENT_KEY: Final = (DEVICE_ID, TIMESTAMP, REPORT_ID)

# Hive partition columns of the lake; never carried into the curated rows as data.
PARTITION_DATE: Final = "date"
PARTITION_HOUR: Final = "hour"

# --- action types --------------------------------------------------------------------------
CONNECTION_SUCCESS: Final = "ConnectionSuccess"
HTTP_INSPECTED: Final = "HttpConnectionInspected"
SSL_INSPECTED: Final = "SslConnectionInspected"
EVIDENCE_SOURCES: Final = (CONNECTION_SUCCESS, HTTP_INSPECTED, SSL_INSPECTED)

# ActionTypes Defender documents for DeviceNetworkEvents; others are carried but flagged.
KNOWN_ACTION_TYPES: Final = (
    "ConnectionSuccess",
    "ConnectionFailed",
    "ConnectionAttempt",
    "ConnectionRequest",
    "ConnectionFound",
    "ConnectionAcknowledged",
    "InboundConnectionAccepted",
    "ListeningConnectionCreated",
    "NetworkSignatureInspected",
    "HttpConnectionInspected",
    "SslConnectionInspected",
    "DnsConnectionInspected",
    "IcmpConnectionInspected",
    "SshConnectionInspected",
    "SmtpConnectionInspected",
    "FtpConnectionInspected",
    "NtlmAuthenticationInspected",
    "InboundInternetScanInspected",
)

# --- curated contract: connection_success ---------------------------------------------------
IS_PROXIED: Final = "IsProxied"
PROXY_IP: Final = "ProxyIP"
PROXY_PORT: Final = "ProxyPort"
TARGET_PORT: Final = "TargetPort"
LINK_METHOD: Final = "LinkMethod"
LINK_DELTA_MS: Final = "LinkDeltaMs"
EVIDENCE_SOURCE: Final = "EvidenceSource"
EVIDENCE_REPORT_ID: Final = "EvidenceReportId"
REQUEST_HOSTS: Final = "RequestHosts"
REMOTE_URL_RAW: Final = "RemoteUrlRaw"

ADDED_COLUMNS: Final = (
    IS_PROXIED,
    PROXY_IP,
    PROXY_PORT,
    TARGET_PORT,
    LINK_METHOD,
    LINK_DELTA_MS,
    EVIDENCE_SOURCE,
    EVIDENCE_REPORT_ID,
    REQUEST_HOSTS,
    REMOTE_URL_RAW,
)

# --- host names ------------------------------------------------------------------------------
# What a destination name must be once normalised, to be published as `RemoteUrl` or to count
# as evidence: a DNS name in ASCII, lower case (an internationalised name as its IDNA A-labels,
# `xn--...`), labels of letters, digits, `_` and `-` (not at either end), at most 63 bytes a
# label and 253 in all. A named value that is not one is kept out of `RemoteUrl`.
HOST_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?"
HOST_NAME_PATTERN: Final = rf"^{HOST_LABEL}(?:\.{HOST_LABEL})*$"
MAX_HOST_NAME_BYTES: Final = 253
MAX_HOST_LABEL_BYTES: Final = 63

METHOD_DIRECT: Final = "direct"
METHOD_SOCKET: Final = "socket"
METHOD_PROCESS: Final = "process"
METHOD_EVIDENCE_ONLY: Final = "evidence_only"
METHOD_UNLINKED: Final = "unlinked"
LINK_METHODS: Final = (
    METHOD_DIRECT,
    METHOD_SOCKET,
    METHOD_PROCESS,
    METHOD_EVIDENCE_ONLY,
    METHOD_UNLINKED,
)

# --- rejects table ---------------------------------------------------------------------------
# Why a row broke the input contract, in the order the rules are checked (first one wins).
REJECT_REASONS: Final = (
    "null_DeviceId",
    "bad_Timestamp",
    "null_Timestamp",
    "bad_ReportId",
    "null_ReportId",
    "bad_LocalPort",
    "bad_RemotePort",
    "bad_InitiatingProcessId",
    "bad_InitiatingProcessCreationTime",
    "bad_AdditionalFields",
    "Timestamp_outside_partition",
    "duplicate_key",
)
REJECT_REASON: Final = "RejectReason"
REJECT_RECORD: Final = "Record"
SOURCE_FILE: Final = "SourceFile"
