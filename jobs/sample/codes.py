"""The integer codes, units and string tables every stage of the generator shares.

Events carry integer codes (an index into a tuple here) until one hour file is written.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from proxylink.transforms import schema as s
from proxylink.transforms.types import ARROW_TYPES, TIMESTAMP_KIND

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

TS_TYPE: Final = ARROW_TYPES[TIMESTAMP_KIND]

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
