"""The two daily summary tables analysts start from: `domain_daily` and `proxy_coverage`.

Both are computed from the day's curated rows (and, for coverage, the day's evidence rows), so
they agree with `connection_success` by construction. The Spark engine implements the same
definitions in `transforms/spark_engine/aggregates.py`; see `transforms/aggregates.py` for the
columns.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from transforms import aggregates as a
from transforms import schema as s
from transforms.psl import EXCEPTION, KIND, NORMAL, SUFFIX, WILDCARD, SuffixRules

_LABELS, _N, _K, _CAND = "_labels", "_n", "_k", "_cand"


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


def domain_daily(curated: pl.LazyFrame, rules: SuffixRules, day: date) -> pl.LazyFrame:
    """One row per `RemoteUrl` of the day's connections with a known destination."""
    known = curated.filter(pl.col(s.REMOTE_URL).is_not_null()).select(
        s.REMOTE_URL,
        s.DEVICE_ID,
        s.TIMESTAMP,
        s.IS_PROXIED,
        _process(curated).alias("_proc"),
    )
    base = known.group_by(s.REMOTE_URL).agg(
        pl.col(s.DEVICE_ID).n_unique().cast(pl.Int64).alias(a.DEVICES),
        pl.len().cast(pl.Int64).alias(a.CONNECTIONS),
        pl.col(s.IS_PROXIED).sum().cast(pl.Int64).alias(a.PROXIED_CONNECTIONS),
        pl.col(s.TIMESTAMP).min().alias(a.FIRST_SEEN),
        pl.col(s.TIMESTAMP).max().alias(a.LAST_SEEN),
    )
    top = (
        known.filter(pl.col("_proc").is_not_null())
        .group_by(s.REMOTE_URL, "_proc")
        .agg(pl.len().alias("_n"))
        .sort([s.REMOTE_URL, "_n", "_proc"], descending=[False, True, False])
        .group_by(s.REMOTE_URL, maintain_order=True)
        .agg(pl.col("_proc").head(a.TOP_PROCESSES_N).alias(a.TOP_PROCESSES))
    )
    return (
        base.join(top, on=s.REMOTE_URL, how="left")
        .join(registered_domains(known, rules), on=s.REMOTE_URL, how="left")
        .with_columns(
            pl.lit(day).alias(s.PARTITION_DATE),
            (pl.col(a.PROXIED_CONNECTIONS) / pl.col(a.CONNECTIONS)).alias(a.PROXIED_SHARE),
            pl.col(a.TOP_PROCESSES).fill_null(pl.lit([], pl.List(pl.String))),
        )
        .select(a.DOMAIN_DAILY_COLUMNS)
        .sort(s.REMOTE_URL)
    )


def proxy_coverage(curated: pl.LazyFrame, evidence: pl.LazyFrame, day: date) -> pl.LazyFrame:
    """One row per device seen on the day: its proxy legs by outcome, its evidence and status."""
    rows = pl.concat(
        [
            curated.select(
                s.DEVICE_ID, s.DEVICE_NAME, s.TIMESTAMP, s.LINK_METHOD, pl.lit(False).alias("_ev")
            ),
            evidence.select(
                s.DEVICE_ID,
                s.DEVICE_NAME,
                s.TIMESTAMP,
                pl.lit(None, pl.String).alias(s.LINK_METHOD),
                pl.lit(True).alias("_ev"),
            ),
        ],
        how="vertical_relaxed",
    )
    method = pl.col(s.LINK_METHOD)

    def count(cond: pl.Expr) -> pl.Expr:
        return cond.fill_null(False).sum().cast(pl.Int64)

    counts = rows.group_by(s.DEVICE_ID).agg(
        count(~pl.col("_ev")).alias(a.CONNECTIONS),
        count(method == s.METHOD_SOCKET).alias(a.LINKED_SOCKET),
        count(method == s.METHOD_PROCESS).alias(a.LINKED_PROCESS),
        count(method == s.METHOD_UNLINKED).alias(a.UNLINKED),
        count(method == s.METHOD_EVIDENCE_ONLY).alias(a.EVIDENCE_ONLY),
        count(method == s.METHOD_DIRECT).alias(a.DIRECT_CONNECTIONS),
        count(pl.col("_ev")).alias(a.EVIDENCE_EVENTS),
        # The name the device had last that day (renames happen); ties by the name itself.
        pl.col(s.DEVICE_NAME).sort_by([s.TIMESTAMP, s.DEVICE_NAME]).drop_nulls().last(),
    )
    legs = pl.col(a.LINKED_SOCKET) + pl.col(a.LINKED_PROCESS) + pl.col(a.UNLINKED)
    linked = pl.col(a.LINKED_SOCKET) + pl.col(a.LINKED_PROCESS)
    return (
        counts.with_columns(legs.alias(a.PROXY_LEGS))
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
