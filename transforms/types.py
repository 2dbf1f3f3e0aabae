"""Column types, declared once: every contract column's kind, and each kind as the polars and
the Arrow type it is.

The lake reader, the link core, the ingest writer, the staged tables and the tests all take
their types from here, so that a type changes in one place.
"""

from __future__ import annotations

from typing import Final

import polars as pl
import pyarrow as pa

from proxylink.transforms import schema as s

STRING, PORT, LONG, TIMESTAMP_KIND, BOOL, COUNT = (
    "string",
    "port",
    "long",
    "timestamp",
    "bool",
    "count",
)

# Each kind as (polars type, Arrow type).
_TYPES: Final[dict[str, tuple[pl.DataType, pa.DataType]]] = {
    STRING: (pl.String(), pa.string()),
    PORT: (pl.Int32(), pa.int32()),
    LONG: (pl.Int64(), pa.int64()),
    TIMESTAMP_KIND: (pl.Datetime("us", "UTC"), pa.timestamp("us", tz="UTC")),
    BOOL: (pl.Boolean(), pa.bool_()),
    COUNT: (pl.Int32(), pa.int32()),
}
POLARS_TYPES: Final = {kind: types[0] for kind, types in _TYPES.items()}
ARROW_TYPES: Final = {kind: types[1] for kind, types in _TYPES.items()}

# The advanced-hunting DeviceNetworkEvents columns, in Defender's order. Every lake file has all
# of them with these types (null where the record had none), so files of any day concatenate.
LAKE_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    (s.TIMESTAMP, TIMESTAMP_KIND),
    (s.DEVICE_ID, STRING),
    (s.DEVICE_NAME, STRING),
    (s.ACTION_TYPE, STRING),
    (s.REMOTE_IP, STRING),
    (s.REMOTE_PORT, PORT),
    (s.REMOTE_URL, STRING),
    (s.LOCAL_IP, STRING),
    (s.LOCAL_PORT, PORT),
    (s.PROTOCOL, STRING),
    ("LocalIPType", STRING),
    ("RemoteIPType", STRING),
    ("InitiatingProcessSHA1", STRING),
    ("InitiatingProcessSHA256", STRING),
    ("InitiatingProcessMD5", STRING),
    (s.PROCESS_FILE_NAME, STRING),
    ("InitiatingProcessFileSize", LONG),
    ("InitiatingProcessVersionInfoCompanyName", STRING),
    ("InitiatingProcessVersionInfoProductName", STRING),
    ("InitiatingProcessVersionInfoProductVersion", STRING),
    ("InitiatingProcessVersionInfoInternalFileName", STRING),
    ("InitiatingProcessVersionInfoOriginalFileName", STRING),
    ("InitiatingProcessVersionInfoFileDescription", STRING),
    (s.PROCESS_ID, LONG),
    ("InitiatingProcessCommandLine", STRING),
    (s.PROCESS_CREATION, TIMESTAMP_KIND),
    ("InitiatingProcessFolderPath", STRING),
    ("InitiatingProcessParentFileName", STRING),
    ("InitiatingProcessParentId", LONG),
    ("InitiatingProcessParentCreationTime", TIMESTAMP_KIND),
    ("InitiatingProcessAccountDomain", STRING),
    ("InitiatingProcessAccountName", STRING),
    ("InitiatingProcessAccountSid", STRING),
    ("InitiatingProcessAccountUpn", STRING),
    ("InitiatingProcessAccountObjectId", STRING),
    ("InitiatingProcessIntegrityLevel", STRING),
    ("InitiatingProcessTokenElevation", STRING),
    ("InitiatingProcessSessionId", LONG),
    ("IsInitiatingProcessRemoteSession", BOOL),
    ("InitiatingProcessRemoteSessionDeviceName", STRING),
    ("InitiatingProcessRemoteSessionIP", STRING),
    (s.REPORT_ID, LONG),
    ("AppGuardContainerId", STRING),
    (s.ADDITIONAL_FIELDS, STRING),
)
LAKE_KINDS: Final = dict(LAKE_COLUMNS)

# The columns proxylink adds to each curated row.
ADDED_KINDS: Final = {
    s.IS_PROXIED: BOOL,
    s.PROXY_IP: STRING,
    s.PROXY_PORT: PORT,
    s.TARGET_PORT: PORT,
    s.LINK_METHOD: STRING,
    s.LINK_DELTA_MS: LONG,
    s.EVIDENCE_SOURCE: STRING,
    s.EVIDENCE_REPORT_ID: LONG,
    s.REQUEST_HOSTS: COUNT,
    s.REMOTE_URL_RAW: STRING,
}
KINDS: Final = {**LAKE_KINDS, **ADDED_KINDS}


def polars_schema(columns: tuple[str, ...] | list[str]) -> dict[str, pl.DataType]:
    """The polars types of these contract columns, in this order."""
    return {c: POLARS_TYPES[KINDS[c]] for c in columns}


def of_kind(kind: str) -> tuple[str, ...]:
    """The input contract's columns of one kind, in contract order."""
    return tuple(c for c in s.REQUIRED_COLUMNS if LAKE_KINDS[c] == kind)


# The input contract's columns as the link core types them (`polars_engine.normalise.coerce`).
CONTRACT_DTYPES: Final = polars_schema(s.REQUIRED_COLUMNS)
