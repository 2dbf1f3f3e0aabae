"""Decide the fate of every row of day D and build the curated and rejected rows.

Every row whose home day is D gets exactly one fate, so the run's counts reconcile:
rows in day = curated + rejected + duplicate + evidence folded + inspection unmatched + other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms.aggregates import EVIDENCE_EVENTS
from proxylink.transforms.engine import INPUT_COUNTS
from proxylink.transforms.params import DayWindow
from proxylink.transforms.polars_engine import aggregates
from proxylink.transforms.polars_engine.classify import (
    BAD_NAME,
    DEV,
    DOMAIN,
    OUTSIDE_HOUR,
    PART_DAY,
    RAW_TEXT,
    ROLE,
    TARGET_PORT,
    UNKNOWN_ACTION,
)
from proxylink.transforms.polars_engine.link import EV_ID, ID, LEG_ID, REQ_HOSTS, LinkResult
from proxylink.transforms.polars_engine.normalise import (
    FILE,
    HOME_DAY,
    REASON,
    REJECT,
    ROW,
    coerce,
    raw_name,
)
from proxylink.transforms.rules import (
    CURATED,
    DIRECT,
    DUPLICATE,
    EVIDENCE_ROLES,
    FATES,
    FOLDED,
    INSPECTION_ROLES,
    LEG,
    NOT_CONNECTION,
    NP,
    NP2,
    OK,
    REJECTED,
    UNMATCHED,
)

FATE = "_fate"
FATE_TYPE = pl.Enum([OK, *FATES])  # the fate column's type

_KEY = [DEV, s.TIMESTAMP, s.REPORT_ID]  # the event key, with the device as its code
# Which of the rows that share a key is kept: the one with the most values, then a fixed order
# of content. RemoteIP is compared as its text: integer codes follow the order strings were
# first seen in the process.
_RIP_TEXT = "_rip_text"
_FILLED = "_filled"
_PROXY_FILE, _PROXY_ROW = "_proxy_file", "_proxy_row"
_EV = "_ev"  # evidence rows that proxy_coverage counts
_TIE = [ROLE, _RIP_TEXT, s.REMOTE_PORT, s.LOCAL_PORT, s.PROCESS_ID, DOMAIN]


def _row_id() -> pl.Expr:
    """A row's id: its file index and its position in the file, as one integer."""
    return pl.col(FILE).cast(pl.UInt64) * (1 << 32) + pl.col(ROW).cast(pl.UInt64)


# The content columns the narrow rows carry as they were read: the number and time columns as
# typed (the same as read for every valid row), the text ones as codes (`RAW_TEXT`, and DeviceId
# and DeviceName with blanks as null, as compared). Dedupe reads only the others again.
_CARRIED = (
    *(s.TIMESTAMP, s.REPORT_ID, s.REMOTE_PORT, s.LOCAL_PORT, s.PROCESS_ID, s.PROCESS_CREATION),
    *(s.DEVICE_ID, s.DEVICE_NAME, *RAW_TEXT),
)


def dedupe(narrow: pl.DataFrame, raw: pl.LazyFrame) -> pl.DataFrame:
    """Add `_id` and `_fate` (ok, duplicate or rejected) to the narrow rows, and let go of the
    text columns they carry only for this (`RAW_TEXT`).

    Rows that share the event key are one event exported more than once when they agree on
    every column both carry a value in (blank text counts as none): files of one lake differ in
    which optional columns they have, and a Log Analytics export adds its own. Of such copies
    the one with the most values is kept, the others are duplicates. A row that differs from the
    kept one in a column both carry breaks the contract and is rejected (`duplicate_key`).
    Only rows that share their key are compared column by column (the columns the narrow rows
    do not carry from a second read), and only their fates are rewritten.
    """
    frame = narrow.with_columns(
        _row_id().alias(ID),
        pl.when(pl.col(REJECT).is_not_null())
        .then(pl.lit(REJECTED, FATE_TYPE))
        .otherwise(pl.lit(OK, FATE_TYPE))
        .alias(FATE),
    )
    # A hash of the key finds the candidates with far less memory than a window over the key;
    # a collision only adds a candidate, which the exact comparison below then keeps apart.
    keys = frame.select(pl.struct(_KEY).hash(seed=0).alias("_key")).to_series()
    shared = (pl.col(FATE) == OK) & pl.lit(_repeated(keys))
    narrow_tie = [c for c in _TIE if c != _RIP_TEXT]
    schema = raw.collect_schema()
    content = [c for c in schema if not c.startswith("_")]
    carried = [c for c in content if c in _CARRIED]
    # The domain as its text: codes follow the order strings were first seen.
    clash = (
        frame.lazy()
        .filter(shared)
        .select(
            FILE,
            ROW,
            ID,
            *_KEY,
            *narrow_tie,
            *[_comparable(c, schema[c], frame.schema[c]).alias(f"_c_{c}") for c in carried],
        )
        .with_columns(pl.col(DOMAIN).cast(pl.String))
        .collect()
    )
    frame = frame.drop(RAW_TEXT)
    if clash.is_empty():
        return frame
    wide = [c for c in content if c not in _CARRIED]
    if wide:
        rows = _of(raw, clash).select(
            FILE, ROW, *[_comparable(c, schema[c]).alias(f"_c_{c}") for c in wide]
        )
        clash = clash.join(rows.collect(), on=[FILE, ROW], how="left")
    clash = clash.with_columns(
        pl.col(f"_c_{s.REMOTE_IP}").alias(_RIP_TEXT),
        pl.sum_horizontal(pl.col(f"_c_{c}").is_not_null() for c in content).alias(_FILLED),
    ).sort(
        [*_KEY, _FILLED, *_TIE, FILE, ROW],
        descending=[False] * len(_KEY) + [True] + [False] * (len(_TIE) + 2),
        nulls_last=True,
    )
    first = pl.struct(_KEY).is_first_distinct()
    kept = clash.filter(first).select(*_KEY, *[pl.col(f"_c_{c}").alias(f"_k_{c}") for c in content])
    others = clash.filter(~first).join(kept, on=_KEY, nulls_equal=True)
    mine, theirs = (pl.col(f"_c_{c}") for c in content), (pl.col(f"_k_{c}") for c in content)
    agrees = pl.all_horizontal(
        a.is_null() | b.is_null() | (a == b) for a, b in zip(mine, theirs, strict=True)
    )
    others = others.select(ID, agrees.alias("_agrees"))
    duplicates = others.filter(pl.col("_agrees")).select(ID)
    clashing = others.filter(~pl.col("_agrees")).select(ID)
    is_dup = pl.col(ID).is_in(duplicates[ID].implode())
    is_clash = pl.col(ID).is_in(clashing[ID].implode())
    return frame.with_columns(
        pl.when(is_dup)
        .then(pl.lit(DUPLICATE, FATE_TYPE))
        .when(is_clash)
        .then(pl.lit(REJECTED, FATE_TYPE))
        .otherwise(FATE)
        .alias(FATE),
        pl.when(is_clash).then(pl.lit("duplicate_key", REASON)).otherwise(REJECT).alias(REJECT),
    )


def _repeated(values: pl.Series) -> pl.Series:
    """`values.is_duplicated()`, by sorting: on the bench day's 7M key hashes 0.15 s instead of
    0.8 s for polars' hash-based one."""
    ordered = values.sort()
    repeated = ordered.filter(ordered == ordered.shift(1)).unique()
    return values.is_in(repeated.implode())


def _comparable(name: str, dtype: pl.DataType, held: pl.DataType | None = None) -> pl.Expr:
    """A column as two exports of one event are compared: blank text is no value, and JSON
    text is compared without its whitespace (an object and its text differ only there).
    `held` is the column's type where it is held otherwise than read (text as codes)."""
    value = pl.col(name)
    if isinstance(held, pl.Categorical):
        value = value.cast(pl.String)
    if dtype != pl.String:
        return value
    value = pl.when(value.str.contains(r"^\s*$")).then(None).otherwise(value)
    if name == s.ADDITIONAL_FIELDS:
        value = value.str.replace_all(r"\s+", "")
    return value


@dataclass(frozen=True)
class Decisions:
    """What became of day D's rows: `fates` holds one narrow row per row of the day (its fate,
    reject reason, role, device), `outputs` the rows that leave the job (curated and rejected
    rows) with the columns the curated rows gain, which mean something on curated rows only.
    Kept apart, the link columns cost nothing on the millions of rows that are folded or not
    connections. `evidence` is what `proxy_coverage` needs of the evidence rows, per device
    (`aggregates.device_names`): from the narrow rows, so the wide pass reads none of them."""

    fates: pl.DataFrame
    outputs: pl.DataFrame
    evidence: pl.DataFrame

    @cached_property
    def curated(self) -> pl.DataFrame:
        """The curated rows of `outputs`: filtered once for the counts and the proxy lookup."""
        return self.outputs.filter(pl.col(FATE) == CURATED)


_FATE_COLUMNS = [FILE, ROW, ID, FATE, REJECT, ROLE, DEV, "_ambiguous"]
_METHOD_TYPE = pl.Enum(list(s.LINK_METHODS))
_SOURCE_TYPE = pl.Enum([s.CONNECTION_SUCCESS, s.HTTP_INSPECTED, s.SSL_INSPECTED])


# What `decide` reads of the narrow rows: the link's own columns can be let go before it.
DECIDE_COLUMNS = (
    *(FILE, ROW, ID, FATE, REJECT, ROLE, DEV, DOMAIN),
    *(s.REPORT_ID, TARGET_PORT, BAD_NAME, HOME_DAY),
    *(s.DEVICE_ID, s.DEVICE_NAME, s.TIMESTAMP),
)


def decide(events: pl.DataFrame, result: LinkResult, window: DayWindow) -> Decisions:
    """Each narrow row of day D: its fate and, for curated rows, the added columns; and the
    per-device summary of the evidence rows `proxy_coverage` counts.

    One lazy query gives all three: the day's rows stream through its joins instead of eager
    copies of them, which held more than the narrow frame itself (measured on the 3x bench
    day)."""
    day = events.lazy().select(DECIDE_COLUMNS).filter(pl.col(HOME_DAY) == window.day)
    links = result.links.lazy().rename({LEG_ID: ID})
    # Membership, not joins, where a result only flags rows.
    used = pl.col(ID).is_in(result.used_evidence[EV_ID].implode()).alias("_used")
    ambiguous = pl.col(ID).is_in(result.ambiguous[LEG_ID].implode()).alias("_amb")
    shared = pl.col(ID).is_in(result.ambiguous_evidence[EV_ID].implode()).alias("_amb")
    # A target-IP row of a proxied socket whose leg is missing: the proxy row's place.
    proxy_row = pl.col("proxy_ev")
    targets = (
        result.proxied_targets.lazy()
        .rename({EV_ID: ID})
        .select(
            ID,
            (proxy_row // (1 << 32)).cast(pl.UInt32).alias(_PROXY_FILE),
            (proxy_row % (1 << 32)).cast(pl.UInt32).alias(_PROXY_ROW),
        )
    )
    # Join each result only to the rows it can concern: links to legs, use to evidence.
    is_leg = pl.col(ROLE) == LEG
    is_ev = pl.col(ROLE).is_in(EVIDENCE_ROLES)
    legs = day.filter(is_leg).join(links, on=ID, how="left").with_columns(ambiguous)
    evidence = day.filter(is_ev).with_columns(used, shared)
    evidence = evidence.join(targets, on=ID, how="left")
    rest = day.filter(~is_leg & ~is_ev)
    plan = pl.concat([legs, evidence, rest], how="diagonal")
    role = pl.col(ROLE)
    ok = pl.col(FATE) == OK
    used_ev = pl.col("_used").fill_null(False)

    def lit(fate: str) -> pl.Expr:
        return pl.lit(fate, FATE_TYPE)

    via_proxy = pl.col(_PROXY_ROW).is_not_null()
    fate_of = (
        pl.when(~ok)
        .then(pl.col(FATE))
        .when(role.is_in([LEG, DIRECT]) | via_proxy)
        .then(lit(CURATED))
        .when(role.is_in([NP, NP2]) & used_ev)
        .then(lit(FOLDED))
        .when(role.is_in([NP, NP2]))
        .then(lit(CURATED))
        .when(role.is_in(INSPECTION_ROLES) & used_ev)
        .then(lit(FOLDED))
        .when(role.is_in(INSPECTION_ROLES))
        .then(lit(UNMATCHED))
        .otherwise(lit(NOT_CONNECTION))
    )
    is_leg = role == LEG
    evidence_only = (role == NP) | via_proxy
    direct = role.is_in([DIRECT, NP2]) & ~via_proxy
    linked = pl.col("method").is_not_null()
    delta_ms = (pl.col("delta_us").abs() // 1000) * pl.col("delta_us").sign()
    method = (
        pl.when(is_leg)
        .then(pl.coalesce(pl.col("method"), pl.lit(s.METHOD_UNLINKED)))
        .when(evidence_only)
        .then(pl.lit(s.METHOD_EVIDENCE_ONLY))
        .when(direct)
        .then(pl.lit(s.METHOD_DIRECT))
    )
    proxied = is_leg | evidence_only
    plan = plan.with_columns(
        fate_of.alias(FATE), pl.col("_amb").fill_null(False).alias("_ambiguous")
    )
    fate = pl.col(FATE)
    counted = role.is_in([NP, *INSPECTION_ROLES]) & fate.is_in([CURATED, FOLDED, UNMATCHED])
    counted |= (role == NP2) & (fate == FOLDED)  # evidence rows proxy_coverage counts
    plan = plan.with_columns(counted.alias(_EV))
    evidence = plan.filter(pl.col(_EV)).select(s.DEVICE_ID, s.DEVICE_NAME, s.TIMESTAMP)
    # One query for all three: they share the joins above.
    fates, outputs, by_device = pl.collect_all(
        [
            plan.select(_FATE_COLUMNS),
            plan.filter(fate.is_in([CURATED, REJECTED])).select(
                FILE,
                ROW,
                FATE,
                REJECT,
                ROLE,
                DEV,
                "_ambiguous",
                pl.when(is_leg)
                .then(pl.col("domain"))
                .otherwise(pl.col(DOMAIN))
                .alias(s.REMOTE_URL),
                proxied.alias(s.IS_PROXIED),
                pl.when(is_leg)
                .then(pl.col("target_port"))
                .when(direct | via_proxy)
                .then(pl.col(TARGET_PORT))
                .cast(pl.Int32)
                .alias(s.TARGET_PORT),
                method.cast(_METHOD_TYPE).alias(s.LINK_METHOD),
                pl.when(is_leg & linked).then(delta_ms).cast(pl.Int64).alias(s.LINK_DELTA_MS),
                pl.when(is_leg & linked)
                .then(pl.col("source"))
                .when(evidence_only)
                .then(pl.lit(s.CONNECTION_SUCCESS))
                .cast(_SOURCE_TYPE)
                .alias(s.EVIDENCE_SOURCE),
                pl.when(is_leg & linked)
                .then(pl.col("ev_rid"))
                .when(evidence_only)
                .then(pl.col(s.REPORT_ID))
                .cast(pl.Int64)
                .alias(s.EVIDENCE_REPORT_ID),
                pl.when(is_leg).then(pl.col(REQ_HOSTS)).cast(pl.Int32).alias(s.REQUEST_HOSTS),
                BAD_NAME,
                _PROXY_FILE,
                _PROXY_ROW,
            ),
            aggregates.device_names(evidence, EVIDENCE_EVENTS),
        ]
    )
    return Decisions(fates, outputs, by_device)


def output_tags(decisions: Decisions) -> pl.DataFrame:
    """The rows of day D that leave the job, by file and row: curated and rejected rows, each
    with its fate and, when curated, the added columns."""
    return decisions.outputs.drop(ROLE, DEV, "_ambiguous", _PROXY_FILE, _PROXY_ROW)


def _of(raw: pl.LazyFrame, rows: pl.DataFrame) -> pl.LazyFrame:
    """The raw rows at the files and rows of `rows`, by a filter on their ids: a join would
    hold the whole wide side in memory (measured at 21M rows: 5.6 GB for a join, 1.6 GB for
    this filter)."""
    ids = rows.select(_row_id().alias(ID))[ID].implode()
    return raw.filter(_row_id().is_in(ids))


def proxy_sockets(raw: pl.LazyFrame, decisions: Decisions) -> pl.DataFrame:
    """The proxy of each curated target-IP row that stands for a proxied connection: the
    socket of the inspection row that showed it went through the proxy. That row may lie
    outside day D, in the context hours past midnight."""
    via = decisions.curated.filter(pl.col(_PROXY_ROW).is_not_null()).select(
        FILE, ROW, _PROXY_FILE, _PROXY_ROW
    )
    sources = via.select(pl.col(_PROXY_FILE).alias(FILE), pl.col(_PROXY_ROW).alias(ROW))
    return (
        _of(raw, sources.unique())
        .pipe(coerce)
        .select(
            pl.col(FILE).alias(_PROXY_FILE),
            pl.col(ROW).alias(_PROXY_ROW),
            pl.col(s.REMOTE_IP).alias("_pip"),
            pl.col(s.REMOTE_PORT).alias("_pp"),
        )
        .join(via.lazy(), on=[_PROXY_FILE, _PROXY_ROW])
        .select(FILE, ROW, "_pip", "_pp")
        .collect()
    )


_URL = "_url"  # the added RemoteUrl, apart from the raw one until the raw one is replaced
_TAG_ROW = "_tag_row"  # the row a tag was made for, to check it sits beside that row


# The output rows are read in chunks of whole files of about this many rows: polars' streaming
# engine holds more of a query's input the more consumers share it, so a chunk at a time bounds
# the memory of the wide pass (measured on the 3x bench day: 9.2 GB in one query).
ROWS_PER_CHUNK = 2_000_000


def wide_rows(
    raw: pl.LazyFrame, tags: pl.DataFrame, parts: Sequence[pl.LazyFrame] | None = None
) -> list[pl.LazyFrame]:
    """Every row of day D that leaves the job (`output_tags`), whole, beside its tags, in
    chunks of whole files of about `ROWS_PER_CHUNK` rows: the one pass over the wide columns
    that the curated rows and the rejects share.

    `parts[i]`, when given, holds the rows of file index i alone, in file order: each file's
    rows are then picked by position and set beside its tags in that order, with no join (a
    join holds its wide side in memory). Without `parts` the rows are joined to their tags, in
    one chunk. `misaligned` checks that each tag sits beside its own row.
    """
    tags = tags.rename({s.REMOTE_URL: _URL}).with_columns(pl.col(ROW).alias(_TAG_ROW))
    # A raw column named like an added one is replaced by it, as in the published schema.
    schema = raw.collect_schema()
    superseded = [c for c in schema if c in s.ADDED_COLUMNS]
    if parts is None or tags.is_empty():
        return [raw.drop(superseded).join(tags.lazy(), on=[FILE, ROW], how="inner")]
    chunks: list[list[pl.LazyFrame]] = [[]]
    rows = 0
    by_file = tags.partition_by(FILE, as_dict=True)
    del tags  # the parts are copies: the whole is let go once the caller lets go of it too
    for (index,), of_file in sorted(by_file.items()):
        if rows >= ROWS_PER_CHUNK:
            chunks.append([])
            rows = 0
        of_file = of_file.sort(ROW)
        picked = parts[int(index)].drop(superseded)
        picked = picked.filter(pl.col(ROW).is_in(of_file[ROW].implode()))
        chunks[-1].append(pl.concat([picked, of_file.drop(FILE, ROW).lazy()], how="horizontal"))
        rows += of_file.height
    return [pl.concat(chunk) for chunk in chunks]


def misaligned(wide: pl.LazyFrame) -> pl.LazyFrame:
    """How many rows of `wide_rows` sit beside another row's tags: must be none."""
    return wide.select(pl.col(ROW).ne_missing(pl.col(_TAG_ROW)).sum().alias("misaligned"))


def curated_rows(wide: pl.LazyFrame, proxies: pl.DataFrame, window: DayWindow) -> pl.LazyFrame:
    """The full source rows of day D's connections, with the link columns added; `wide` is
    `wide_rows`, `proxies` the proxy sockets of target-IP rows (`proxy_sockets`).

    The rows are picked before they are coerced, so only the output rows pay for it. A
    target-IP row that stands for a proxied connection shows the target's socket; its proxy is
    the socket of the inspection row that showed it went through the proxy.
    """
    picked = wide.filter(pl.col(FATE) == CURATED)
    source = [c for c in picked.collect_schema() if not c.startswith("_") and c not in _HIVE]
    source = [c for c in source if c not in s.ADDED_COLUMNS]
    proxied = pl.col(s.IS_PROXIED)
    ordered = [*source, *s.ADDED_COLUMNS]
    # A lookup, not a join: polars' streaming join held the whole wide side (measured on the
    # bench day: 1.9 GB for a few thousand rows to look up).
    ids = proxies.select(_row_id().alias(ID))[ID]

    def looked_up(column: str, dtype: pl.DataType) -> pl.Expr:
        return _row_id().replace_strict(ids, proxies[column], default=None, return_dtype=dtype)

    return (
        picked.pipe(coerce)
        .with_columns(
            pl.when(pl.col(BAD_NAME)).then(pl.col(s.REMOTE_URL)).alias(s.REMOTE_URL_RAW),
            pl.col(_URL).cast(pl.String).alias(s.REMOTE_URL),
            looked_up("_pip", pl.String()).alias("_pip"),
            looked_up("_pp", pl.Int32()).alias("_pp"),
        )
        .with_columns(
            pl.coalesce("_pip", pl.when(proxied).then(pl.col(s.REMOTE_IP))).alias(s.PROXY_IP),
            pl.coalesce("_pp", pl.when(proxied).then(pl.col(s.REMOTE_PORT))).alias(s.PROXY_PORT),
            pl.col(s.LINK_METHOD).cast(pl.String),
            pl.col(s.EVIDENCE_SOURCE).cast(pl.String),
        )
        .select(ordered)
        .with_columns(pl.lit(window.day).alias(s.PARTITION_DATE))
    )


_HIVE = (s.PARTITION_DATE, s.PARTITION_HOUR)
REJECT_COLUMNS = (
    s.PARTITION_DATE,
    s.REJECT_REASON,
    s.SOURCE_FILE,
    s.DEVICE_ID,
    s.TIMESTAMP,
    s.REPORT_ID,
    s.ACTION_TYPE,
    s.REJECT_RECORD,
)


def rejected_rows(wide: pl.LazyFrame, files: list[str], window: DayWindow) -> pl.LazyFrame:
    """The rejected rows of day D as they were read, each with its reason and file; `wide` is
    `wide_rows`."""
    schema = wide.collect_schema()
    content = [c for c in schema if not c.startswith("_") and c not in s.ADDED_COLUMNS]
    text = {
        c: pl.coalesce(pl.col(raw_name(c)), pl.col(c).cast(pl.String))
        if raw_name(c) in schema
        else pl.col(c).cast(pl.String)
        for c in content
    }
    return wide.filter(pl.col(FATE) == REJECTED).select(
        pl.lit(window.day).alias(s.PARTITION_DATE),
        pl.col(REJECT).cast(pl.String).alias(s.REJECT_REASON),
        pl.col(FILE)
        .replace_strict(list(range(len(files))), files, return_dtype=pl.String)
        .alias(s.SOURCE_FILE),
        *[text[c].alias(c) for c in (s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID, s.ACTION_TYPE)],
        pl.struct([e.alias(c) for c, e in text.items()])
        .struct.json_encode()
        .alias(s.REJECT_RECORD),
    )


def fate_counts(decisions: Decisions) -> dict[str, int]:
    """Counts per fate, curated rows per link method and rejects per reason."""
    fates, added = decisions.fates, decisions.curated
    method = pl.col(s.LINK_METHOD)
    counts: dict[str, int] = {f: 0 for f in FATES}
    # Grouped by the Enum itself: its values come out as text, without a cast of every row.
    for fate, n in fates.group_by(FATE).len().iter_rows():
        counts[fate] = n
    counts["rows_in_day"] = fates.height
    counts.update({f"method_{m}": 0 for m in s.LINK_METHODS})
    for m, n in added.group_by(method).len().iter_rows():
        counts[f"method_{m}"] = n
    counts["legs"] = int((added[ROLE] == LEG).sum())
    counts["unlinked_ambiguous"] = int(
        added.select(((method == s.METHOD_UNLINKED) & pl.col("_ambiguous")).sum()).item()
    )
    # Folded evidence that two or more legs could have explained: it explains none.
    counts["evidence_ambiguous"] = int(
        fates.select(((pl.col(FATE) == FOLDED) & pl.col("_ambiguous")).sum()).item()
    )
    return counts


def reject_reasons(decisions: Decisions) -> dict[str, int]:
    rejected = decisions.fates.lazy().filter(pl.col(FATE) == REJECTED)
    counts = rejected.group_by(pl.col(REJECT).cast(pl.String)).len().sort(REJECT).collect()
    return dict(counts.iter_rows())


def link_counts(decisions: Decisions) -> dict[str, int]:
    """Legs linked, overall and on devices that show any evidence (network protection on)."""
    ok = decisions.fates.lazy().filter(pl.col(FATE).is_in([CURATED, FOLDED]))
    evidence_roles = pl.col(ROLE).is_in([NP, *INSPECTION_ROLES]) | (
        (pl.col(ROLE) == NP2) & (pl.col(FATE) == FOLDED)
    )
    protected = ok.filter(evidence_roles).select(DEV).unique()
    # Every leg is curated: its link columns are among the added ones.
    legs = decisions.curated.lazy().filter(pl.col(ROLE) == LEG)
    legs = legs.select(
        DEV, pl.col(s.LINK_METHOD).is_in([s.METHOD_SOCKET, s.METHOD_PROCESS]).alias("_linked")
    )
    on_protected = legs.join(protected, on=DEV, how="semi")
    linked = pl.col("_linked")
    devices, with_evidence, all_legs, protected_legs = pl.collect_all(
        [
            ok.select(pl.col(DEV).n_unique()),
            protected.select(pl.len()),
            legs.select(pl.len(), linked.sum()),
            on_protected.select(pl.len(), linked.sum()),
        ]
    )
    return {
        "devices": int(devices.item()),
        "devices_with_evidence": int(with_evidence.item()),
        "legs": int(all_legs.item(0, 0)),
        "legs_linked": int(all_legs.item(0, 1) or 0),
        "legs_on_devices_with_evidence": int(protected_legs.item(0, 0)),
        "legs_linked_on_devices_with_evidence": int(protected_legs.item(0, 1) or 0),
    }


def input_counts(events: pl.DataFrame, window: DayWindow) -> pl.DataFrame:
    """One row per input file of day D's own partitions: its rows and how many broke each rule
    (`transforms.engine.INPUT_COUNTS`), from the narrow rows; the rates are derived once the
    counts are summed."""
    # The reasons are compared as the Enum they are: no cast of every row to text.
    reasons = pl.col(REJECT)
    ports = ["bad_LocalPort", "bad_RemotePort"]
    bad_value = reasons.is_in(
        [r for r in s.REJECT_REASONS if r.startswith("bad_") and r not in ports]
    )
    counts = [c for c in INPUT_COUNTS if c not in (FILE, "unknown")]
    return (
        events.filter(pl.col(PART_DAY) == window.day)
        .group_by(FILE)
        .agg(
            pl.len().alias("rows"),
            pl.col(OUTSIDE_HOUR).sum().alias("outside_hour"),
            reasons.is_in(["null_DeviceId", "null_Timestamp", "null_ReportId"])
            .sum()
            .alias("null_key"),
            bad_value.sum().alias("bad_value"),
            reasons.is_in(ports).sum().alias("bad_port"),
            (reasons == "Timestamp_outside_partition").sum().alias("outside_partition"),
            pl.col(BAD_NAME).sum().alias("bad_host_name"),
            pl.col(UNKNOWN_ACTION).drop_nulls().unique().cast(pl.String).sort().alias("unknown"),
        )
        .select(FILE, *[pl.col(c).fill_null(0) for c in counts], "unknown")
        .cast(INPUT_COUNTS)
    )
