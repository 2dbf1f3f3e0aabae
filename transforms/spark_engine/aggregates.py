"""`domain_daily` and `proxy_coverage` on Spark, with the polars engine's definitions.

The registered domain is a join of every suffix of a name to the Public Suffix List's rules
(a small broadcast frame), not a Python UDF. See transforms/aggregates.py for the columns.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from transforms import aggregates as a
from transforms import schema as s
from transforms.psl import EXCEPTION, KIND, NORMAL, SUFFIX, WILDCARD, SuffixRules


def _rules(spark: SparkSession, rules: SuffixRules) -> DataFrame:
    return spark.createDataFrame(
        list(rules.frame().iter_rows()), schema=f"{SUFFIX} string, {KIND} string"
    )


def _tail(labels: Column, n: Column) -> Column:
    """The last `n` labels joined with dots."""
    return F.array_join(F.slice(labels, -n, n), ".")


def registered_domains(urls: DataFrame, rules: SuffixRules) -> DataFrame:
    """`RemoteUrl` → `RegisteredDomain` (eTLD+1); null for an IP literal or a bare suffix."""
    names = (
        urls.select(s.REMOTE_URL)
        .distinct()
        .withColumn("_labels", F.split(F.col(s.REMOTE_URL), r"\.", -1))
        .withColumn("_n", F.size("_labels"))
    )
    candidates = names.select(
        s.REMOTE_URL,
        "_n",
        F.explode(F.sequence(F.lit(1), F.col("_n"))).alias("_k"),
        "_labels",
    ).select(s.REMOTE_URL, "_n", "_k", _tail(F.col("_labels"), F.col("_k")).alias("_cand"))
    kind, k = F.col(KIND), F.col("_k").cast("bigint")
    table = F.broadcast(_rules(urls.sparkSession, rules))
    matched = (
        candidates.join(table, candidates["_cand"] == table[SUFFIX], "inner")
        .select(
            s.REMOTE_URL,
            F.when(kind == NORMAL, k)
            .when((kind == WILDCARD) & (k + 1 <= F.col("_n")), k + 1)
            .alias("_len"),
            F.when(kind == EXCEPTION, k - 1).alias("_exc"),
        )
        .groupBy(s.REMOTE_URL)
        .agg(F.max("_len").alias("_len"), F.max("_exc").alias("_exc"))
    )
    keep = F.coalesce(F.col("_exc"), F.col("_len"), F.lit(1).cast("bigint")) + 1
    not_a_name = F.col(s.REMOTE_URL).rlike(a.NOT_A_NAME)
    return names.join(matched, on=s.REMOTE_URL, how="left").select(
        s.REMOTE_URL,
        F.when(~not_a_name & (F.col("_n") >= keep), _tail(F.col("_labels"), keep)).alias(
            a.REGISTERED_DOMAIN
        ),
    )


def _process(curated: DataFrame) -> Column:
    if s.PROCESS_FILE_NAME in curated.columns:
        return F.lower(F.col(s.PROCESS_FILE_NAME))
    return F.lit(None).cast("string")


def domain_daily(curated: DataFrame, rules: SuffixRules, day: date) -> DataFrame:
    """One row per `RemoteUrl` of the day's connections with a known destination."""
    known = curated.filter(F.col(s.REMOTE_URL).isNotNull()).select(
        s.REMOTE_URL, s.DEVICE_ID, s.TIMESTAMP, s.IS_PROXIED, _process(curated).alias("_proc")
    )
    base = known.groupBy(s.REMOTE_URL).agg(
        F.countDistinct(s.DEVICE_ID).cast("bigint").alias(a.DEVICES),
        F.count(F.lit(1)).cast("bigint").alias(a.CONNECTIONS),
        F.sum(F.col(s.IS_PROXIED).cast("bigint")).alias(a.PROXIED_CONNECTIONS),
        F.min(s.TIMESTAMP).alias(a.FIRST_SEEN),
        F.max(s.TIMESTAMP).alias(a.LAST_SEEN),
    )
    # Most connections first, then by name: sorting (-n, name) structs gives that order.
    ranked = F.sort_array(F.collect_list(F.struct((-F.col("_n")).alias("neg"), F.col("_proc"))))
    top = (
        known.filter(F.col("_proc").isNotNull())
        .groupBy(s.REMOTE_URL, "_proc")
        .agg(F.count(F.lit(1)).alias("_n"))
        .groupBy(s.REMOTE_URL)
        .agg(
            F.transform(F.slice(ranked, 1, a.TOP_PROCESSES_N), lambda x: x["_proc"]).alias(
                a.TOP_PROCESSES
            )
        )
    )
    return (
        base.join(top, on=s.REMOTE_URL, how="left")
        .join(registered_domains(known, rules), on=s.REMOTE_URL, how="left")
        .withColumns(
            {
                s.PARTITION_DATE: F.lit(day),
                a.PROXIED_SHARE: F.col(a.PROXIED_CONNECTIONS) / F.col(a.CONNECTIONS),
                a.TOP_PROCESSES: F.coalesce(
                    F.col(a.TOP_PROCESSES), F.array().cast("array<string>")
                ),
            }
        )
        .select(*a.DOMAIN_DAILY_COLUMNS)
    )


def proxy_coverage(curated: DataFrame, evidence: DataFrame, day: date) -> DataFrame:
    """One row per device seen on the day: its proxy legs by outcome, its evidence and status."""
    rows = curated.select(
        s.DEVICE_ID, s.DEVICE_NAME, s.TIMESTAMP, s.LINK_METHOD, F.lit(False).alias("_ev")
    ).unionByName(
        evidence.select(
            s.DEVICE_ID,
            s.DEVICE_NAME,
            s.TIMESTAMP,
            F.lit(None).cast("string").alias(s.LINK_METHOD),
            F.lit(True).alias("_ev"),
        )
    )
    method = F.col(s.LINK_METHOD)

    def count(cond: Column) -> Column:
        return F.sum(F.coalesce(cond, F.lit(False)).cast("bigint"))

    # The name the device had last that day; ties by the name itself (max of (time, name)).
    last_name = F.max(
        F.when(F.col(s.DEVICE_NAME).isNotNull(), F.struct(s.TIMESTAMP, s.DEVICE_NAME))
    )
    counts = rows.groupBy(s.DEVICE_ID).agg(
        count(~F.col("_ev")).alias(a.CONNECTIONS),
        count(method == s.METHOD_SOCKET).alias(a.LINKED_SOCKET),
        count(method == s.METHOD_PROCESS).alias(a.LINKED_PROCESS),
        count(method == s.METHOD_UNLINKED).alias(a.UNLINKED),
        count(method == s.METHOD_EVIDENCE_ONLY).alias(a.EVIDENCE_ONLY),
        count(method == s.METHOD_DIRECT).alias(a.DIRECT_CONNECTIONS),
        count(F.col("_ev")).alias(a.EVIDENCE_EVENTS),
        last_name[s.DEVICE_NAME].alias(s.DEVICE_NAME),
    )
    legs = F.col(a.LINKED_SOCKET) + F.col(a.LINKED_PROCESS) + F.col(a.UNLINKED)
    linked = F.col(a.LINKED_SOCKET) + F.col(a.LINKED_PROCESS)
    return (
        counts.withColumn(a.PROXY_LEGS, legs)
        .withColumns(
            {
                s.PARTITION_DATE: F.lit(day),
                a.LINK_RATE: F.when(F.col(a.PROXY_LEGS) > 0, linked / F.col(a.PROXY_LEGS)),
                a.STATUS: F.when(F.col(a.EVIDENCE_EVENTS) > 0, F.lit(a.STATUS_PROTECTED))
                .when(F.col(a.PROXY_LEGS) > 0, F.lit(a.STATUS_BLIND))
                .otherwise(F.lit(a.STATUS_DIRECT_ONLY)),
            }
        )
        .select(*a.PROXY_COVERAGE_COLUMNS)
    )
