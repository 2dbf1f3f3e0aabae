"""Split the raw rows into legs, evidence, direct connections and the rest.

The result is narrow: only what linking needs, plus each row's place (`_file`, `_row`) so
that the curated rows can be assembled from the full rows afterwards. Rules on text are judged
once per distinct value and looked up by code (`classify`).
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
    MASK,
    OUTSIDE_HOUR,
    PART_DAY,
    REJECT,
    ROW,
    TEXT_COLUMNS,
    blank_ip_to_null,
    blank_to_null,
    evidence_fields,
    first_reason,
    normalise,
    reject_mask,
    suspect_fields,
    unparseable_evidence_fields,
    utc_date,
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
# pass over the raw files is needed: its partition's day (`PART_DAY`), whether it strays from
# its partition's hour (`OUTSIDE_HOUR`), and its ActionType when Defender does not document it
# (else null; a code of the build's categories).
UNKNOWN_ACTION = "_unknown_action"
DEV = "_dev"  # integer code of DeviceId, for cheap joins
RIP = "_rip"  # integer code of RemoteIP, IPv4-mapped spellings as their IPv4 address
DOMAIN_CODE = "_dom"  # integer code of the domain
DOMAIN = "_domain"  # the destination domain, a code of the build's categories
TARGET_PORT = "_target_port"
TO_PROXY = "_to_proxy"
BAD_NAME = "_bad_name"  # the row named a destination that is not a host name

ROLES = pl.Enum(ROLE_NAMES)  # the role column's type

# Text columns the narrow rows also carry as they were read (codes of the build's categories),
# so that dedupe compares rows that share a key without reading them again.
RAW_TEXT = (s.ACTION_TYPE, s.REMOTE_IP, s.REMOTE_URL, s.ADDITIONAL_FIELDS)

# What linking and counting need of every row; strings are replaced by integer codes to keep
# the one eager frame of the run small.
NARROW_COLUMNS = (
    FILE,
    ROW,
    HOME_DAY,
    REJECT,
    DEV,
    s.DEVICE_ID,  # a code of the build's categories, null where blank
    s.DEVICE_NAME,  # likewise: what proxy_coverage names a device by
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
    *RAW_TEXT,
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
_CONNECT, _REQUEST = "_connect", "_request"  # an HTTP row's request is a CONNECT / a plain one
_AF_BAD = "_af_bad"  # an inspection row's AdditionalFields is not a JSON object


def _authority(uri: pl.Expr) -> pl.Expr:
    """The authority (`host[:port]`) of an absolute URI (`http://host:8080/path`); null for a
    path (`/x`), which a request sends when its Host header names the target."""
    return uri.str.extract(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://([^/?#\s]+)", 1)


def _unmapped(ip: pl.Expr) -> pl.Expr:
    """An IPv4-mapped address (`::ffff:10.0.0.1`) as its IPv4 address; others as written."""
    mapped = ip.str.starts_with("::ffff:") | ip.str.starts_with("::FFFF:")
    return pl.when(mapped).then(ip.str.slice(7)).otherwise(ip)


def destinations(texts: pl.LazyFrame) -> pl.LazyFrame:
    """What a row names, from its text columns as read (`ActionType`, `RemoteUrl`,
    `AdditionalFields`; `RemotePort` for a `ConnectionSuccess`): its destination domain
    (`_domain`, null with `_bad_name` where the name is not a host name), its target port, what
    its HTTP request is (`_connect`, `_request`) and whether its `AdditionalFields` breaks the
    contract (`_af_bad`)."""
    action = pl.col(s.ACTION_TYPE)
    typed = texts.with_columns(
        blank_to_null(action).alias(s.ACTION_TYPE),
        blank_to_null(pl.col(s.REMOTE_URL)).alias(s.REMOTE_URL),
        blank_to_null(pl.col(s.ADDITIONAL_FIELDS)).alias(s.ADDITIONAL_FIELDS),
    )
    typed = (
        typed.with_columns(evidence_fields())
        .with_columns(suspect_fields())
        .with_columns(unparseable_evidence_fields().alias(_AF_BAD))
    )
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
    return (
        typed.with_columns(
            named.alias("_named"),
            target_port.alias(TARGET_PORT),
            is_connect.alias(_CONNECT),
            is_request.alias(_REQUEST),
        )
        .pipe(normalise_domain, "_named", DOMAIN, BAD_NAME)
        .select(s.ACTION_TYPE, DOMAIN, BAD_NAME, TARGET_PORT, _CONNECT, _REQUEST, _AF_BAD)
    )


def role() -> pl.Expr:
    """A row's role, from its `ActionType`, whether its socket is a proxy's (`_to_proxy`), what
    it names (`destinations`) and whether it has a process."""
    action = pl.col(s.ACTION_TYPE)
    has_domain = pl.col(DOMAIN).is_not_null()
    proxied = pl.col(TO_PROXY)
    has_process = pl.col(s.PROCESS_ID).fill_null(0) != 0
    success = action == s.CONNECTION_SUCCESS
    # A network-protection row on the proxy socket that names no host name (`exa mple.com`) is
    # neither evidence nor a second connection of its socket.
    return (
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
        .when((action == s.HTTP_INSPECTED) & proxied & has_domain & pl.col(_CONNECT))
        .then(pl.lit(HTTP, ROLES))
        .when(pl.col(_REQUEST) & proxied & has_domain)
        .then(pl.lit(REQ, ROLES))
        .when((action == s.SSL_INSPECTED) & proxied & has_domain)
        .then(pl.lit(SSL, ROLES))
        .otherwise(pl.lit(OTHER, ROLES))
    )


# What a row names depends on its ActionType: a ConnectionSuccess names its RemoteUrl, an HTTP
# or TLS inspection row its AdditionalFields; any other row names nothing.
_NAMED_BY: tuple[tuple[str, str], ...] = (
    (s.CONNECTION_SUCCESS, s.REMOTE_URL),
    (s.HTTP_INSPECTED, s.ADDITIONAL_FIELDS),
    (s.SSL_INSPECTED, s.ADDITIONAL_FIELDS),
)
_KIND = "_kind"  # which of _NAMED_BY a row's ActionType is (its index + 1), 0 for none
_AT = "_at"  # a row's place in the table of what the rows name


class _Texts:
    """The distinct text values of one build: code i (`pl.Categories`) is `values[i]`, and the
    last value is null, where rows with a null code look up."""

    def __init__(self, categories: pl.Categories) -> None:
        self.categories = categories
        self.values = pl.concat([categories.to_series(), pl.Series([None], dtype=pl.String)])
        self.null = len(self.values) - 1

    def at(self, column: str) -> pl.Expr:
        """Each row's place in `values`, by the code in `column`."""
        return pl.col(column).to_physical().fill_null(self.null)

    def judged(self, expr: pl.Expr) -> pl.Series:
        """`expr` of `pl.col("v")`, judged once per distinct value."""
        return self.values.to_frame("v").select(expr).to_series()

    def code(self, texts: pl.Series) -> pl.Series:
        """The codes of these texts (new ones are added to the build's categories)."""
        return texts.cast(pl.Categorical(self.categories))


def _looked_up(table: pl.Series, place: pl.Expr) -> pl.Expr:
    """Each row's value in a table judged once per distinct value (or combination)."""
    return pl.lit(table).gather(place)


def classify(raw: pl.LazyFrame, params: LinkParams) -> pl.DataFrame:
    """The narrow frame: each row's role, destination domain and target port, its reject
    reason and the integer codes that linking joins on.

    The rows are read with their text columns as codes (`normalise.normalise`): every rule on
    text (blanks, the JSON fields, host-name normalisation, the proxy sockets, the role) is
    judged once per distinct value or combination, and each row looks its result up by its
    codes, in one query. A day has millions of rows but only thousands of distinct texts.
    """
    categories = pl.Categories.random()
    rows = normalise(raw, params, categories).collect()
    texts = _Texts(categories)
    v = pl.col("v")
    at = {c: f"_at_{c}" for c in TEXT_COLUMNS}
    frame = rows.lazy().with_columns(texts.at(c).alias(at[c]) for c in TEXT_COLUMNS)

    # ActionType: which text it names a destination in, and whether Defender documents it.
    action = blank_to_null(v)
    kinds = pl.lit(0, pl.UInt8)
    for i, (name, _) in reversed(list(enumerate(_NAMED_BY))):
        kinds = pl.when(action == name).then(pl.lit(i + 1, pl.UInt8)).otherwise(kinds)
    undocumented = pl.when(~action.is_in(s.KNOWN_ACTION_TYPES).fill_null(True))
    unknown = texts.code(texts.judged(undocumented.then(action.fill_null("(null)"))))
    # What each distinct text names, as each kind of row that names something reads it, and
    # one row for the rows that name nothing: a row's place in it is its kind's section plus
    # the code of the column its kind reads.
    n = len(texts.values)
    named = destinations(
        pl.concat(
            [
                *(
                    texts.values.to_frame(column)
                    .lazy()
                    .with_columns(pl.lit(name).alias(s.ACTION_TYPE))
                    for name, column in _NAMED_BY
                ),
                pl.LazyFrame({s.ACTION_TYPE: [None]}, schema={s.ACTION_TYPE: pl.String}),
            ],
            how="diagonal",
        ).with_columns(pl.lit(None, pl.Int32).alias(s.REMOTE_PORT))
    ).collect()
    section = pl.lit(len(_NAMED_BY) * n, pl.UInt32)
    for i, (_, column) in reversed(list(enumerate(_NAMED_BY))):
        section = (
            pl.when(pl.col(_KIND) == i + 1)
            .then(pl.lit(i * n, pl.UInt32) + pl.col(at[column]))
            .otherwise(section)
        )
    # The proxy sockets: judged once per distinct (address, port).
    socket = pl.col(at[s.REMOTE_IP]).cast(pl.Int64) * 65537
    socket += (pl.col(s.REMOTE_PORT).cast(pl.Int64) + 1).fill_null(0)
    keys = frame.select(socket.unique().alias("_key")).collect()["_key"]
    sockets = pl.DataFrame(
        [
            keys.alias("_key"),
            texts.values.gather(keys // 65537).alias("_ip"),
            (keys % 65537).cast(pl.Int32).alias("_port"),
        ]
    )
    proxy = proxy_match(
        blank_ip_to_null(pl.col("_ip")),
        pl.when(pl.col("_port") > 0).then(pl.col("_port") - 1),
        params.proxies,
    )
    proxies = sockets.filter(proxy)["_key"]
    # The role, judged once per place and each of (proxied or not) x (with a process or not).
    combos = pl.DataFrame({TO_PROXY: [False, False, True, True], s.PROCESS_ID: [0, 1, 0, 1]})
    roles = named.join(combos, how="cross", maintain_order="left_right").select(role().alias(ROLE))
    has_process = pl.col(s.PROCESS_ID).fill_null(0) != 0
    # In 64 bits: four places per row of `named` would wrap 32 bits at 358M distinct texts.
    picked = pl.col(_AT).cast(pl.Int64) * 4 + socket.is_in(proxies.implode()).cast(pl.Int64) * 2
    picked += has_process.cast(pl.Int64)
    rip = texts.code(texts.judged(_unmapped(blank_ip_to_null(v)))).to_physical()
    cleaned = texts.code(texts.judged(blank_to_null(v)))  # a blank's code is null
    place = pl.col(_AT)
    text_rules = {
        "null_DeviceId": pl.col(s.DEVICE_ID).is_null(),
        "bad_AdditionalFields": _looked_up(named[_AF_BAD], place),
    }
    ts = pl.col(s.TIMESTAMP)
    return (
        frame.with_columns(
            _looked_up(texts.judged(kinds), pl.col(at[s.ACTION_TYPE])).alias(_KIND),
            *(_looked_up(cleaned, pl.col(at[c])).alias(c) for c in (s.DEVICE_ID, s.DEVICE_NAME)),
        )
        .with_columns(section.alias(_AT))
        .with_columns(
            _looked_up(rip, pl.col(at[s.REMOTE_IP])).alias(RIP),
            _looked_up(roles[ROLE], picked).alias(ROLE),
            _looked_up(texts.code(named[DOMAIN]), place).alias(DOMAIN),
            _looked_up(named[BAD_NAME], place).alias(BAD_NAME),
            pl.when(pl.col(_KIND) == 1 + _NAMED_BY.index((s.CONNECTION_SUCCESS, s.REMOTE_URL)))
            .then(pl.col(s.REMOTE_PORT))
            .otherwise(_looked_up(named[TARGET_PORT], place))
            .alias(TARGET_PORT),
            _looked_up(unknown, pl.col(at[s.ACTION_TYPE])).alias(UNKNOWN_ACTION),
            first_reason(pl.col(MASK) | reject_mask(text_rules)).alias(REJECT),
        )
        .with_columns(
            pl.col(s.DEVICE_ID).to_physical().alias(DEV),
            pl.col(DOMAIN).to_physical().alias(DOMAIN_CODE),
            # A row's home day is the UTC date of its Timestamp; a rejected row belongs to the
            # day of its partition, so each row is counted by exactly one day's run.
            pl.when(pl.col(REJECT).is_null())
            .then(utc_date(ts))
            .otherwise(pl.col(PART_DAY))
            .alias(HOME_DAY),
        )
        .select(NARROW_COLUMNS)
        .collect()
    )
