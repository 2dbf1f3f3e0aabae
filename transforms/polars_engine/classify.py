"""Split normalised rows into legs, evidence, direct connections and the rest.

The result is narrow: only what linking needs, plus each row's place (`_file`, `_row`) so
that the curated rows can be assembled from the full rows afterwards.
"""

from __future__ import annotations

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms.expressions import is_host_name, proxy_match
from proxylink.transforms.params import LinkParams
from proxylink.transforms.polars_engine.normalise import (
    AF_HOST,
    AF_METHOD,
    AF_SERVER_NAME,
    AF_URI,
    FILE,
    HOME_DAY,
    PART_END,
    PART_START,
    REJECT,
    ROW,
)
from proxylink.transforms.rules import (
    DIRECT,
    HTTP,
    LEG,
    NP,
    NP2,
    OTHER,
    REQ,
    SSL,
)
from proxylink.transforms.rules import ROLES as ROLE_NAMES

ROLE = "_role"
# What the input profile counts of each row, carried in the narrow frame so that no second
# pass over the raw files is needed: its partition's day, whether it strays from its
# partition's hour, and its ActionType when Defender does not document it (else null).
PART_DAY = "_part_day"
OUTSIDE_HOUR = "_outside_hour"
UNKNOWN_ACTION = "_unknown_action"
DEV = "_dev"  # integer code of DeviceId, for cheap joins
RIP = "_rip"  # integer code of RemoteIP, IPv4-mapped spellings as their IPv4 address
DOMAIN_CODE = "_dom"  # integer code of the domain
DOMAIN = "_domain"
TARGET_PORT = "_target_port"
TO_PROXY = "_to_proxy"
BAD_NAME = "_bad_name"  # the row named a destination that is not a host name

ROLES = pl.Enum(ROLE_NAMES)  # the role column's type

# What linking and counting need of every row; strings are replaced by integer codes to keep
# the one eager frame of the run small.
NARROW_COLUMNS = (
    FILE,
    ROW,
    HOME_DAY,
    REJECT,
    DEV,
    s.TIMESTAMP,
    s.REPORT_ID,
    RIP,
    s.REMOTE_PORT,
    s.LOCAL_PORT,
    s.PROCESS_ID,
    s.PROCESS_CREATION,
    ROLE,
    DOMAIN,
    DOMAIN_CODE,
    TARGET_PORT,
    PART_DAY,
    OUTSIDE_HOUR,
    UNKNOWN_ACTION,
    BAD_NAME,
)


# A name that is already clean: one regular expression without counted repetition, and no
# longer than one label may be, so that its labels need no counting. The rest is rewritten.
_CLEAN = r"^[a-z0-9_](?:[a-z0-9_\-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_\-]*[a-z0-9_])?)*$"


def normalise_domain(
    frame: pl.LazyFrame, source: str, target: str, invalid: str | None = None
) -> pl.LazyFrame:
    """A host name as analysts compare it: lower case, no scheme, path, user or port, and an
    internationalised name as its IDNA A-labels (`bücher.de` is `xn--bcher-kva.de`).

    A value that is still not a host name (`s.HOST_NAME_PATTERN`, DNS length limits) gives a
    null name: `exa mple.com`, `javascript:alert(1)`, a NUL byte, a 300-byte label. `invalid`,
    if given, names a column that flags those rows, so that the job counts them.

    Most names are already clean; only the others go through the rewriting. Each step is its own
    column so that the engine evaluates it once.
    """
    value = pl.col(source)
    clean = value.str.contains(_CLEAN) & (value.str.len_bytes() <= s.MAX_HOST_LABEL_BYTES)
    frame = frame.with_columns(pl.when(~clean).then(value).alias("_messy"))
    e = pl.col("_messy").str.strip_chars().str.to_lowercase()
    e = e.str.replace(r"^[a-z][a-z0-9+.\-]*://", "")
    e = e.str.replace(r"[/?#].*$", "")
    e = e.str.replace(r"^[^@]*@", "")
    e = e.str.replace(r":[0-9]*$", "")
    e = e.str.strip_chars_end(".")
    e = e.map_batches(_a_labels, return_dtype=pl.String, is_elementwise=True)
    frame = frame.with_columns(e.alias("_fixed"))
    fixed, messy = pl.col("_fixed"), pl.col("_messy")
    valid = is_host_name(fixed)
    name = pl.when(messy.is_null()).then(value).when(valid.fill_null(False)).then(fixed)
    columns = [name.alias(target)]
    if invalid is not None:
        columns.append((messy.is_not_null() & ~valid.fill_null(False)).alias(invalid))
    return frame.with_columns(columns).drop("_messy", "_fixed")


def _a_labels(names: pl.Series) -> pl.Series:
    """Names with letters outside ASCII as IDNA A-labels (Python's `idna` codec: IDNA 2003,
    nameprep: case-folded and NFKC-mapped), or null where there is none. Each distinct name is
    converted once; the others pass through."""
    wide = names.filter(names.str.contains(r"[^\x00-\x7f]")).unique()
    if wide.is_empty():
        return names
    old = wide.to_list()
    return names.replace(old, [_a_label(name) for name in old])


def _a_label(name: str) -> str | None:
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:  # an empty or over-long label, or a character IDNA prohibits
        return None


_METHOD, _AUTHORITY = "_method", "_authority"


def _authority(uri: pl.Expr) -> pl.Expr:
    """The authority (`host[:port]`) of an absolute URI (`http://host:8080/path`); null for a
    path (`/x`), which a request sends when its Host header names the target."""
    return uri.str.extract(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://([^/?#\s]+)", 1)


def _unmapped(ip: pl.Expr) -> pl.Expr:
    """An IPv4-mapped address (`::ffff:10.0.0.1`) as its IPv4 address; others as written. Two
    prefix tests per row instead of `normalise_ip`'s text rewriting of every address."""
    mapped = ip.str.starts_with("::ffff:") | ip.str.starts_with("::FFFF:")
    return pl.when(mapped).then(ip.str.slice(7)).otherwise(ip)


def classify(typed: pl.LazyFrame, params: LinkParams) -> pl.LazyFrame:
    """Narrow frame with each row's role, destination domain and target port."""
    action = pl.col(s.ACTION_TYPE)
    # The inspection fields are only filled for their own row types, so what is derived from
    # them costs nothing on the other rows; each is computed once, as a column.
    typed = typed.with_columns(
        pl.col(AF_METHOD).str.to_uppercase().alias(_METHOD),
        _authority(pl.col(AF_URI)).alias(_AUTHORITY),
    )
    method, authority = pl.col(_METHOD), pl.col(_AUTHORITY)
    is_connect = method == "CONNECT"
    # A plain request through the proxy: its absolute URI (http://host/path) or Host header
    # names the target; normalise_domain drops the user, path and port.
    is_request = (action == s.HTTP_INSPECTED) & method.is_not_null() & ~is_connect
    http_host = pl.col(AF_HOST)
    http_uri = pl.col(AF_URI)
    named = pl.coalesce(
        pl.when(action == s.CONNECTION_SUCCESS).then(pl.col(s.REMOTE_URL)),
        pl.when(is_connect).then(pl.coalesce(http_host, http_uri)),
        pl.when(is_request).then(pl.coalesce(http_host, authority)),
        pl.col(AF_SERVER_NAME),
    )
    port_of = r":([0-9]{1,5})$"
    port_text = pl.coalesce(http_uri.str.extract(port_of, 1), http_host.str.extract(port_of, 1))
    request_port = pl.coalesce(
        authority.str.extract(port_of, 1),
        http_host.str.extract(port_of, 1),
        pl.when(http_uri.str.contains(r"(?i)^\s*https://")).then(pl.lit("443")),
        pl.lit("80"),
    )
    target_port = (
        pl.when((action == s.HTTP_INSPECTED) & is_connect)
        .then(port_text.cast(pl.Int32, strict=False))
        .when(is_request)
        .then(request_port.cast(pl.Int32, strict=False))
        .when(action == s.CONNECTION_SUCCESS)
        .then(pl.col(s.REMOTE_PORT))
    )
    to_proxy = proxy_match(pl.col(s.REMOTE_IP), pl.col(s.REMOTE_PORT), params.proxies)
    frame = typed.with_columns(
        named.alias("_named"),
        target_port.alias(TARGET_PORT),
        to_proxy.alias(TO_PROXY),
    ).pipe(normalise_domain, "_named", DOMAIN, BAD_NAME)
    has_domain = pl.col(DOMAIN).is_not_null()
    proxied = pl.col(TO_PROXY)
    has_process = pl.col(s.PROCESS_ID).fill_null(0) != 0
    success = action == s.CONNECTION_SUCCESS
    # A network-protection row on the proxy socket that names no host name (`exa mple.com`) is
    # neither evidence nor a second connection of its socket.
    role = (
        pl.when(success & proxied & pl.col(BAD_NAME))
        .then(pl.lit(OTHER, ROLES))
        .when(success & proxied & ~has_domain)
        .then(pl.lit(LEG, ROLES))
        .when(success & proxied)
        .then(pl.lit(NP, ROLES))
        .when(success & has_domain & has_process)
        .then(pl.lit(NP2, ROLES))
        .when(success)
        .then(pl.lit(DIRECT, ROLES))
        .when((action == s.HTTP_INSPECTED) & proxied & has_domain & is_connect)
        .then(pl.lit(HTTP, ROLES))
        .when(is_request & proxied & has_domain)
        .then(pl.lit(REQ, ROLES))
        .when((action == s.SSL_INSPECTED) & proxied & has_domain)
        .then(pl.lit(SSL, ROLES))
        .otherwise(pl.lit(OTHER, ROLES))
    )
    codes = [
        pl.col(s.DEVICE_ID).cast(pl.Categorical).to_physical().alias(DEV),
        # IPv4-mapped and plain spellings of one address are one socket: process events may
        # show ::ffff:10.20.0.5 where the inspection sensor shows 10.20.0.5.
        _unmapped(pl.col(s.REMOTE_IP)).cast(pl.Categorical).to_physical().alias(RIP),
        pl.col(DOMAIN).cast(pl.Categorical).to_physical().alias(DOMAIN_CODE),
    ]
    ts = pl.col(s.TIMESTAMP)
    profile = [
        pl.col(PART_START).dt.date().alias(PART_DAY),
        ((ts < pl.col(PART_START)) | (ts >= pl.col(PART_END))).alias(OUTSIDE_HOUR),
        pl.when(~action.is_in(s.KNOWN_ACTION_TYPES).fill_null(True))
        .then(action.fill_null("(null)"))
        .alias(UNKNOWN_ACTION),
    ]
    return frame.with_columns(role.alias(ROLE), *codes, *profile).select(NARROW_COLUMNS)
