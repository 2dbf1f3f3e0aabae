"""The two daily summary tables analysts start from: `domain_daily` and `proxy_coverage`.

Both are computed from the day's curated rows (and, for coverage, the day's evidence rows), so
they agree with `connection_success` by construction; see `transforms/aggregates.py` for the
columns. `proxy_coverage` is local to a device and `domain_daily` local to a name, so both can be
computed on partitions of the day's rows: the Spark runner computes coverage on its device
partitions and `domain_daily` from partials (`domain_partials`) shuffled by name.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from proxylink.transforms import aggregates as a
from proxylink.transforms import schema as s
from proxylink.transforms.psl import EXCEPTION, KIND, NORMAL, SUFFIX, WILDCARD, SuffixRules

_LABELS, _N, _K, _CAND, _PROC = "_labels", "_n", "_k", "_cand", "_proc"


def registered_domains(urls: pl.LazyFrame, rules: SuffixRules) -> pl.LazyFrame:
    """`RemoteUrl` → `RegisteredDomain` (eTLD+1) for each distinct name, by joining every
    suffix of the name to the rules; null for an IP literal or a bare public suffix."""
    names = (
        urls.select(s.REMOTE_URL)
        .unique()
        .with_columns(pl.col(s.REMOTE_URL).str.split(".").alias(_LABELS))
        .with_columns(pl.col(_LABELS).list.len().alias(_N))
    )
    candidates = (
        names.with_columns(pl.int_ranges(1, pl.col(_N) + 1).alias(_K))
        .explode(_K)
        .with_columns(
            pl.col(_LABELS).list.slice(-pl.col(_K), pl.col(_K)).list.join(".").alias(_CAND)
        )
        .select(s.REMOTE_URL, _N, _K, _CAND)
    )
    kind = pl.col(KIND)
    k = pl.col(_K).cast(pl.Int64)
    matched = (
        candidates.join(rules.frame().lazy(), left_on=_CAND, right_on=SUFFIX, how="inner")
        .with_columns(
            pl.when(kind == NORMAL)
            .then(k)
            .when((kind == WILDCARD) & (k + 1 <= pl.col(_N)))
            .then(k + 1)
            .alias("_len"),
            pl.when(kind == EXCEPTION).then(k - 1).alias("_exc"),
        )
        .group_by(s.REMOTE_URL)
        .agg(pl.col("_len").max(), pl.col("_exc").max())
    )
    suffix_len = pl.coalesce(pl.col("_exc"), pl.col("_len"), pl.lit(1, pl.Int64))
    keep = suffix_len + 1
    not_a_name = pl.col(s.REMOTE_URL).str.contains(a.NOT_A_NAME)
    return names.join(matched, on=s.REMOTE_URL, how="left").select(
        s.REMOTE_URL,
        pl.when(~not_a_name & (pl.col(_N).cast(pl.Int64) >= keep))
        .then(pl.col(_LABELS).list.slice(-keep, keep).list.join("."))
        .alias(a.REGISTERED_DOMAIN),
    )


def _process(curated: pl.LazyFrame) -> pl.Expr:
    if s.PROCESS_FILE_NAME in curated.collect_schema():
        return pl.col(s.PROCESS_FILE_NAME).str.to_lowercase()
    return pl.lit(None, pl.String)


def domain_partials(curated: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """What `domain_daily` needs of some curated rows: per `RemoteUrl` its devices, connections,
    proxied connections and time range, and per (`RemoteUrl`, process) its connections.

    Partials of device-disjoint rows add up (`merge_domain_partials`): a device counted for a
    name in one part is never counted for it in another.
    """
    known = curated.filter(pl.col(s.REMOTE_URL).is_not_null()).select(
        s.REMOTE_URL,
        s.DEVICE_ID,
        s.TIMESTAMP,
        s.IS_PROXIED,
        _process(curated).alias(_PROC),
    )
    urls = known.group_by(s.REMOTE_URL).agg(
        pl.col(s.DEVICE_ID).n_unique().cast(pl.Int64).alias(a.DEVICES),
        pl.len().cast(pl.Int64).alias(a.CONNECTIONS),
        pl.col(s.IS_PROXIED).sum().cast(pl.Int64).alias(a.PROXIED_CONNECTIONS),
        pl.col(s.TIMESTAMP).min().alias(a.FIRST_SEEN),
        pl.col(s.TIMESTAMP).max().alias(a.LAST_SEEN),
    )
    procs = (
        known.filter(pl.col(_PROC).is_not_null())
        .group_by(s.REMOTE_URL, _PROC)
        .agg(pl.len().cast(pl.Int64).alias(_N))
    )
    return urls, procs


def merge_domain_partials(
    parts: list[tuple[pl.LazyFrame, pl.LazyFrame]],
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The partials of the union of device-disjoint parts."""
    urls = (
        pl.concat([u for u, _ in parts])
        .group_by(s.REMOTE_URL)
        .agg(
            pl.col(a.DEVICES).sum(),
            pl.col(a.CONNECTIONS).sum(),
            pl.col(a.PROXIED_CONNECTIONS).sum(),
            pl.col(a.FIRST_SEEN).min(),
            pl.col(a.LAST_SEEN).max(),
        )
    )
    procs = pl.concat([p for _, p in parts]).group_by(s.REMOTE_URL, _PROC).agg(pl.col(_N).sum())
    return urls, procs


def domain_daily_of(
    partials: tuple[pl.LazyFrame, pl.LazyFrame], rules: SuffixRules, day: date
) -> pl.LazyFrame:
    """`domain_daily` rows from the partials of every row of the day that names a domain (or of
    every row of the names it covers: the rows of one `RemoteUrl` never need another's)."""
    urls, procs = merge_domain_partials([partials])
    top = (
        procs.sort([s.REMOTE_URL, _N, _PROC], descending=[False, True, False])
        .group_by(s.REMOTE_URL, maintain_order=True)
        .agg(pl.col(_PROC).head(a.TOP_PROCESSES_N).alias(a.TOP_PROCESSES))
    )
    return (
        urls.join(top, on=s.REMOTE_URL, how="left")
        .join(registered_domains(urls, rules), on=s.REMOTE_URL, how="left")
        .with_columns(
            pl.lit(day).alias(s.PARTITION_DATE),
            (pl.col(a.PROXIED_CONNECTIONS) / pl.col(a.CONNECTIONS)).alias(a.PROXIED_SHARE),
            pl.col(a.TOP_PROCESSES).fill_null(pl.lit([], pl.List(pl.String))),
        )
        .select(a.DOMAIN_DAILY_COLUMNS)
        .sort(s.REMOTE_URL)
    )


def domain_daily(curated: pl.LazyFrame, rules: SuffixRules, day: date) -> pl.LazyFrame:
    """One row per `RemoteUrl` of the day's connections with a known destination."""
    return domain_daily_of(domain_partials(curated), rules, day)


NAMED_AT = "_named_at"  # when a device last had a name, in a per-device summary


def device_names(rows: pl.LazyFrame, count: str) -> pl.LazyFrame:
    """Per device of `rows` (DeviceId, DeviceName, Timestamp; as text or as categorical codes):
    how many rows (`count`), and the name it had last (ties by the name itself) with when
    (`NAMED_AT`).

    The rows are counted per device and name first, on their codes where they are codes, so
    that only those few pairs are compared as text."""
    named = pl.col(s.DEVICE_NAME).is_not_null()
    pairs = rows.group_by(s.DEVICE_ID, s.DEVICE_NAME).agg(
        pl.len().cast(pl.Int64).alias(count), pl.col(s.TIMESTAMP).max().alias(NAMED_AT)
    )
    return (
        pairs.select(
            pl.col(s.DEVICE_ID).cast(pl.String),
            pl.col(s.DEVICE_NAME).cast(pl.String),
            count,
            pl.when(named).then(pl.col(NAMED_AT)).alias(NAMED_AT),
        )
        .group_by(s.DEVICE_ID)
        .agg(pl.col(count).sum(), pl.col(NAMED_AT).max(), _latest_name(NAMED_AT))
    )


def _latest_name(at: str) -> pl.Expr:
    """Per group: the last name by the time in `at` (ties by the name itself)."""
    return pl.col(s.DEVICE_NAME).sort_by([at, s.DEVICE_NAME]).drop_nulls().last()


def _last_name() -> list[pl.Expr]:
    """Per group: the name it had last (ties by the name itself), and when (`NAMED_AT`)."""
    named = pl.col(s.DEVICE_NAME).is_not_null()
    return [pl.col(s.TIMESTAMP).filter(named).max().alias(NAMED_AT), _latest_name(s.TIMESTAMP)]


def proxy_coverage(curated: pl.LazyFrame, evidence: pl.LazyFrame, day: date) -> pl.LazyFrame:
    """One row per device seen on the day: its proxy legs by outcome, its evidence and status.

    `evidence` is the per-device summary of the day's evidence rows (`device_names`, counting
    `EvidenceEvents`): a device's name is the last one it had on any of its rows."""
    method = pl.col(s.LINK_METHOD)

    def count(cond: pl.Expr) -> pl.Expr:
        return cond.fill_null(False).sum().cast(pl.Int64)

    counts = curated.group_by(s.DEVICE_ID).agg(
        pl.len().cast(pl.Int64).alias(a.CONNECTIONS),
        count(method == s.METHOD_SOCKET).alias(a.LINKED_SOCKET),
        count(method == s.METHOD_PROCESS).alias(a.LINKED_PROCESS),
        count(method == s.METHOD_UNLINKED).alias(a.UNLINKED),
        count(method == s.METHOD_EVIDENCE_ONLY).alias(a.EVIDENCE_ONLY),
        count(method == s.METHOD_DIRECT).alias(a.DIRECT_CONNECTIONS),
        *_last_name(),
    )
    names = [s.DEVICE_ID, s.DEVICE_NAME, NAMED_AT]
    both = pl.concat([counts.select(names), evidence.select(names)])
    last_name = both.group_by(s.DEVICE_ID).agg(_latest_name(NAMED_AT))
    per_device = (
        counts.drop(s.DEVICE_NAME, NAMED_AT)
        .join(
            evidence.select(s.DEVICE_ID, a.EVIDENCE_EVENTS),
            on=s.DEVICE_ID,
            how="full",
            coalesce=True,
        )
        .join(last_name, on=s.DEVICE_ID, how="left")
        .with_columns(
            pl.col(c).fill_null(0)
            for c in (
                a.CONNECTIONS,
                a.LINKED_SOCKET,
                a.LINKED_PROCESS,
                a.UNLINKED,
                a.EVIDENCE_ONLY,
                a.DIRECT_CONNECTIONS,
                a.EVIDENCE_EVENTS,
            )
        )
    )
    legs = pl.col(a.LINKED_SOCKET) + pl.col(a.LINKED_PROCESS) + pl.col(a.UNLINKED)
    linked = pl.col(a.LINKED_SOCKET) + pl.col(a.LINKED_PROCESS)
    return (
        per_device.with_columns(legs.alias(a.PROXY_LEGS))
        .with_columns(
            pl.lit(day).alias(s.PARTITION_DATE),
            pl.when(pl.col(a.PROXY_LEGS) > 0)
            .then(linked / pl.col(a.PROXY_LEGS))
            .alias(a.LINK_RATE),
            pl.when(pl.col(a.EVIDENCE_EVENTS) > 0)
            .then(pl.lit(a.STATUS_PROTECTED))
            .when(pl.col(a.PROXY_LEGS) > 0)
            .then(pl.lit(a.STATUS_BLIND))
            .otherwise(pl.lit(a.STATUS_DIRECT_ONLY))
            .alias(a.STATUS),
        )
        .select(a.PROXY_COVERAGE_COLUMNS)
        .sort(s.DEVICE_ID)
    )
