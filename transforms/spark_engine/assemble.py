"""Decide the fate of every row of day D and build the curated and rejected rows (polars rules).

Every row whose home day is D gets exactly one fate, so the run's counts reconcile:
rows in day = curated + rejected + duplicate + evidence folded + inspection unmatched + other.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from transforms import schema as s
from transforms.params import DayWindow, LinkParams
from transforms.polars_engine.assemble import (
    CURATED,
    DUPLICATE,
    FATE,
    FATES,
    FOLDED,
    OK,
    REJECT_COLUMNS,
    REJECTED,
    UNMATCHED,
)
from transforms.polars_engine.assemble import OTHER as NOT_CONNECTION
from transforms.spark_engine.classify import (
    DIRECT,
    DOMAIN,
    HTTP,
    LEG,
    NP,
    NP2,
    ROLE,
    ROLE_ORDER,
    SSL,
    TARGET_PORT,
)
from transforms.spark_engine.frames import fresh, materialise
from transforms.spark_engine.link import EV_ID, ID, LEG_ID, LinkResult
from transforms.spark_engine.normalise import (
    FILE,
    HOME_DAY,
    PART_END,
    PART_START,
    REJECT,
    ROW,
    coerce,
    epoch_us,
    micros,
    raw_name,
    utc_date,
)
from transforms.spark_engine.text import blank_to_null, polars_text

__all__ = [
    "CURATED",
    "FATE",
    "FATES",
    "OK",
    "REJECTED",
    "curated_rows",
    "decide",
    "dedupe",
    "fate_counts",
    "input_profile",
    "link_stats",
    "rejected_rows",
    "with_ids",
]

DEV = s.DEVICE_ID
_KEY = [s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID]
_TIE = [s.REMOTE_IP, s.REMOTE_PORT, s.LOCAL_PORT, s.PROCESS_ID, DOMAIN]
_HIVE = (s.PARTITION_DATE, s.PARTITION_HOUR)
_SHARED = "_shared"


def _content(raw: DataFrame) -> list[str]:
    return [c for c in raw.columns if not c.startswith("_")]


def _id() -> Column:
    return F.col(FILE).cast("bigint") * (1 << 32) + F.col(ROW).cast("bigint")


def with_ids(narrow: DataFrame) -> DataFrame:
    """`_id`, the first `_fate` (ok or rejected) and whether a valid row shares its event key.

    Rows that are already rejected get their own id in the window key, so that rows without a
    key (null DeviceId, say) do not pile into one partition.
    """
    ok = F.col(REJECT).isNull()
    spread = F.when(~ok, F.col(ID))
    by_key = Window.partitionBy(*_KEY, spread)
    return (
        narrow.withColumn(ID, _id())
        .withColumn(FATE, F.when(ok, F.lit(OK)).otherwise(F.lit(REJECTED)))
        .withColumn(_SHARED, ok & (F.count(F.lit(1)).over(by_key) > 1))
    )


def dedupe(keyed: DataFrame, raw: DataFrame) -> DataFrame:
    """Drop exact duplicates and reject key clashes: the events with their fates.

    As in the polars engine, copies with the same content keep the one read first, and among
    rows that share a key but differ in content one is kept by a fixed content order: role,
    RemoteIP, RemotePort, LocalPort, process id, domain, then the content itself. Where the
    polars engine orders RemoteIP by a categorical code and the whole row by its own hash, this
    engine orders RemoteIP as text and the row by `xxhash64`; the kept row differs only among
    rows that share their key, role and these columns and differ elsewhere.
    """
    clash = keyed.filter(F.col(_SHARED))
    if clash.isEmpty():
        return keyed.drop(_SHARED)
    tie = {f"_t{i}": F.col(c) for i, c in enumerate(_TIE)}
    role_rank: Column = F.lit(None).cast("int")
    for role, rank in ROLE_ORDER.items():
        role_rank = F.when(F.col(ROLE) == role, F.lit(rank)).otherwise(role_rank)
    clash = clash.select(
        FILE,
        ROW,
        ID,
        *[F.col(k).alias(f"_k{i}") for i, k in enumerate(_KEY)],
        role_rank.alias("_t_role"),
        *[e.alias(n) for n, e in tie.items()],
    )
    content = _content(raw)
    rows = raw.select(FILE, ROW, *[F.col(f"`{c}`") for c in content]).join(
        fresh(clash), [FILE, ROW]
    )
    key = [f"_k{i}" for i in range(len(_KEY))]
    same = Window.partitionBy(*key, *[F.col(f"`{c}`") for c in content]).orderBy(FILE, ROW)
    rows = rows.withColumn("_copy", F.row_number().over(same) > 1)
    order = [F.col(c).asc_nulls_last() for c in ["_t_role", *tie, "_hash", FILE, ROW]]
    kept = rows.filter(~F.col("_copy")).withColumn(
        "_hash", F.xxhash64(*[F.col(f"`{c}`") for c in content])
    )
    kept = kept.withColumn("_rank", F.row_number().over(Window.partitionBy(*key).orderBy(*order)))
    copies = rows.filter(F.col("_copy")).select(ID, F.lit(DUPLICATE).alias("_new_fate"))
    clashes = kept.filter(F.col("_rank") > 1).select(ID, F.lit(REJECTED).alias("_new_fate"))
    flags = materialise(copies.unionByName(clashes))
    events = (
        keyed.drop(_SHARED)
        .join(F.broadcast(flags), on=ID, how="left")
        .withColumn(
            REJECT,
            F.when(F.col("_new_fate") == REJECTED, F.lit("duplicate_key")).otherwise(F.col(REJECT)),
        )
        .withColumn(FATE, F.coalesce(F.col("_new_fate"), F.col(FATE)))
        .drop("_new_fate")
    )
    return events


def decide(events: DataFrame, result: LinkResult, window: DayWindow) -> DataFrame:
    """One row per narrow row of day D: its fate and, for curated rows, the added columns."""
    needed = [FILE, ROW, ID, FATE, REJECT, ROLE, DEV, DOMAIN, s.REPORT_ID, TARGET_PORT]
    day = events.filter(F.col(HOME_DAY) == F.lit(window.day)).select(*needed)
    links = result.links.withColumnRenamed(LEG_ID, ID)
    used = result.used_evidence.withColumnRenamed(EV_ID, ID).withColumn("_used", F.lit(True))
    ambiguous = result.ambiguous.withColumnRenamed(LEG_ID, ID).withColumn("_amb", F.lit(True))
    day = (
        day.join(links, on=ID, how="left")
        .join(ambiguous, on=ID, how="left")
        .join(used, on=ID, how="left")
    )
    role = F.col(ROLE)
    ok = F.col(FATE) == OK
    used_ev = F.coalesce(F.col("_used"), F.lit(False))
    fate = (
        F.when(~ok, F.col(FATE))
        .when(role.isin(LEG, DIRECT), F.lit(CURATED))
        .when(role.isin(NP, NP2) & used_ev, F.lit(FOLDED))
        .when(role.isin(NP, NP2), F.lit(CURATED))
        .when(role.isin(HTTP, SSL) & used_ev, F.lit(FOLDED))
        .when(role.isin(HTTP, SSL), F.lit(UNMATCHED))
        .otherwise(F.lit(NOT_CONNECTION))
    )
    is_leg = role == LEG
    evidence_only = role == NP
    direct = role.isin(DIRECT, NP2)
    linked = F.col("method").isNotNull()
    # `div` truncates toward zero, as the polars engine's |delta| // 1000 * sign(delta) does.
    delta_ms = F.expr("delta_us div 1000")
    method = (
        F.when(is_leg, F.coalesce(F.col("method"), F.lit(s.METHOD_UNLINKED)))
        .when(evidence_only, F.lit(s.METHOD_EVIDENCE_ONLY))
        .when(direct, F.lit(s.METHOD_DIRECT))
    )
    proxied = is_leg | evidence_only
    return day.select(
        FILE,
        ROW,
        ID,
        fate.alias(FATE),
        REJECT,
        ROLE,
        DEV,
        F.coalesce(F.col("_amb"), F.lit(False)).alias("_ambiguous"),
        F.when(is_leg, F.col("domain")).otherwise(F.col(DOMAIN)).alias(s.REMOTE_URL),
        proxied.alias(s.IS_PROXIED),
        F.when(is_leg, F.col("target_port"))
        .when(direct, F.col(TARGET_PORT))
        .cast("int")
        .alias(s.TARGET_PORT),
        method.alias(s.LINK_METHOD),
        F.when(is_leg & linked, delta_ms).cast("bigint").alias(s.LINK_DELTA_MS),
        F.when(is_leg & linked, F.col("source"))
        .when(evidence_only, F.lit(s.CONNECTION_SUCCESS))
        .alias(s.EVIDENCE_SOURCE),
        F.when(is_leg & linked, F.col("ev_rid"))
        .when(evidence_only, F.col(s.REPORT_ID))
        .cast("bigint")
        .alias(s.EVIDENCE_REPORT_ID),
    )


def _day_files(raw: DataFrame, window: DayWindow, params: LinkParams) -> DataFrame:
    """The raw rows whose partition can hold a row of day D: a valid row lies within the clock
    skew of its partition, a rejected row belongs to its partition's day."""
    skew = params.clock_skew_ms * 1000
    start, end = epoch_us(window.start), epoch_us(window.end)
    return raw.filter((micros(PART_END) + skew > start) & (micros(PART_START) - skew < end))


def curated_rows(
    raw: DataFrame, decisions: DataFrame, window: DayWindow, params: LinkParams
) -> DataFrame:
    """The full source rows of day D's connections, with the link columns added."""
    source = [c for c in _content(raw) if c not in _HIVE]
    computed = [c for c in s.ADDED_COLUMNS if c not in (s.PROXY_IP, s.PROXY_PORT)]
    added = decisions.filter(F.col(FATE) == CURATED).select(
        FILE, ROW, F.col(s.REMOTE_URL).alias("_url"), *computed
    )
    proxied = F.col(s.IS_PROXIED)
    return (
        _day_files(raw, window, params)
        .join(fresh(added), on=[FILE, ROW], how="inner")
        .transform(coerce)
        .withColumn(s.REMOTE_URL, F.col("_url"))
        .withColumn(s.PROXY_IP, F.when(proxied, F.col(s.REMOTE_IP)))
        .withColumn(s.PROXY_PORT, F.when(proxied, F.col(s.REMOTE_PORT)))
        .select(*[F.col(f"`{c}`") for c in source], *s.ADDED_COLUMNS)
        .withColumn(s.PARTITION_DATE, F.lit(window.day))
    )


def evidence_rows(
    raw: DataFrame, decisions: DataFrame, window: DayWindow, params: LinkParams
) -> DataFrame:
    """Day D's valid evidence rows, folded or not, with the device columns coverage needs
    (the polars engine's `evidence_rows`)."""
    role, fate = F.col(ROLE), F.col(FATE)
    evidence = role.isin(NP, HTTP, SSL) & fate.isin(CURATED, FOLDED, UNMATCHED)
    evidence = evidence | ((role == NP2) & (fate == FOLDED))
    rows = decisions.filter(evidence).select(FILE, ROW)
    return (
        _day_files(raw, window, params)
        .join(fresh(rows), on=[FILE, ROW], how="inner")
        .select(s.DEVICE_ID, blank_to_null(F.col(s.DEVICE_NAME)).alias(s.DEVICE_NAME), s.TIMESTAMP)
    )


def rejected_rows(
    raw: DataFrame,
    decisions: DataFrame,
    files: Sequence[str],
    window: DayWindow,
    params: LinkParams,
) -> DataFrame:
    """The rejected rows of day D as they were read, each with its reason and file."""
    bad = decisions.filter(F.col(FATE) == REJECTED).select(FILE, ROW, REJECT)
    types = {f.name: f.dataType for f in raw.schema.fields}
    text: dict[str, Column] = {}
    for c in _content(raw):
        value = polars_text(F.col(f"`{c}`"), types[c])
        text[c] = F.coalesce(F.col(raw_name(c)), value) if raw_name(c) in types else value
    names = F.array(*[F.lit(f) for f in files]) if files else F.array().cast("array<string>")
    record = F.to_json(
        F.struct(*[e.alias(c) for c, e in text.items()]), {"ignoreNullFields": "false"}
    )
    return (
        _day_files(raw, window, params)
        .join(fresh(bad), on=[FILE, ROW], how="inner")
        .select(
            F.lit(window.day).alias(s.PARTITION_DATE),
            F.col(REJECT).alias(s.REJECT_REASON),
            F.element_at(names, F.col(FILE).cast("int") + 1).alias(s.SOURCE_FILE),
            *[text[c].alias(c) for c in (s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID, s.ACTION_TYPE)],
            record.alias(s.REJECT_RECORD),
        )
        .select(*REJECT_COLUMNS)
    )


def fate_counts(decisions: DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """Counts per fate, curated rows per link method, and rejects per reason, in one pass."""
    rows = decisions.groupBy(FATE, s.LINK_METHOD, ROLE, "_ambiguous", REJECT).count().collect()
    counts: dict[str, int] = {f: 0 for f in FATES}
    counts["rows_in_day"] = 0
    for method in s.LINK_METHODS:
        counts[f"method_{method}"] = 0
    counts["legs"] = counts["unlinked_ambiguous"] = 0
    reasons: dict[str, int] = {}
    for fate, method, role, ambiguous, reason, n in rows:
        counts[fate] = counts.get(fate, 0) + n
        counts["rows_in_day"] += n
        if fate == REJECTED:
            reasons[reason] = reasons.get(reason, 0) + n
        if fate != CURATED:
            continue
        key = f"method_{method}"
        counts[key] = counts.get(key, 0) + n
        if role == LEG:
            counts["legs"] += n
        if method == s.METHOD_UNLINKED and ambiguous:
            counts["unlinked_ambiguous"] += n
    ordered = {f: counts[f] for f in FATES}
    ordered["rows_in_day"] = counts["rows_in_day"]
    ordered.update({k: v for k, v in counts.items() if k.startswith("method_")})
    ordered["legs"] = counts["legs"]
    ordered["unlinked_ambiguous"] = counts["unlinked_ambiguous"]
    return ordered, dict(sorted(reasons.items()))


def link_stats(decisions: DataFrame) -> dict[str, float | int]:
    """Link rate overall and on devices that show any evidence (network protection on)."""
    fate, role = F.col(FATE), F.col(ROLE)
    ok = decisions.filter(fate.isin(CURATED, FOLDED))
    evidence = role.isin(NP, HTTP, SSL) | ((role == NP2) & (fate == FOLDED))
    is_leg = role == LEG
    linked = is_leg & F.col(s.LINK_METHOD).isin(s.METHOD_SOCKET, s.METHOD_PROCESS)
    per_device = ok.groupBy(DEV).agg(
        F.max(evidence.cast("int")).alias("prot"),
        F.sum(is_leg.cast("int")).alias("legs"),
        F.sum(linked.cast("int")).alias("linked"),
    )
    prot = F.col("prot") == 1
    total = per_device.agg(
        F.count(F.lit(1)).alias("devices"),
        F.sum(F.col("prot")).alias("devices_with_evidence"),
        F.sum("legs").alias("legs"),
        F.sum("linked").alias("linked"),
        F.sum(F.when(prot, F.col("legs"))).alias("prot_legs"),
        F.sum(F.when(prot, F.col("linked"))).alias("prot_linked"),
    ).first()
    assert total is not None
    n_legs, n_prot = int(total["legs"] or 0), int(total["prot_legs"] or 0)
    n_linked, n_prot_linked = int(total["linked"] or 0), int(total["prot_linked"] or 0)
    return {
        "devices": int(total["devices"] or 0),
        "devices_with_evidence": int(total["devices_with_evidence"] or 0),
        "legs": n_legs,
        "legs_linked": n_linked,
        "link_rate": round(n_linked / n_legs, 6) if n_legs else 0.0,
        "legs_on_devices_with_evidence": n_prot,
        "link_rate_devices_with_evidence": round(n_prot_linked / n_prot, 6) if n_prot else 0.0,
    }


def input_profile(
    events: DataFrame, raw: DataFrame, files: Sequence[str], window: DayWindow
) -> pl.DataFrame:
    """One row per input file of day D's own partitions: its rows and how many broke each rule.

    The aggregation runs in Spark; the few rows it yields are shaped with the polars engine's
    expressions, so the profile has the same columns and dtypes.
    """
    own = raw.filter(utc_date(micros(PART_START)) == F.lit(window.day))
    reason = F.col(REJECT)
    port = reason.isin("bad_LocalPort", "bad_RemotePort")
    rules = {
        "null_key": reason.isin("null_DeviceId", "null_Timestamp", "null_ReportId"),
        "bad_value": reason.startswith("bad_") & ~port,
        "bad_port": port,
        "outside_partition": reason == "Timestamp_outside_partition",
    }
    per_rule = events.groupBy(FILE).agg(
        *[F.sum(F.coalesce(c, F.lit(False)).cast("int")).alias(n) for n, c in rules.items()]
    )
    ts = micros(s.TIMESTAMP)
    outside_hour = (ts < micros(PART_START)) | (ts >= micros(PART_END))
    # One aggregation of the raw rows (a second one joined to the first would be a self-join of
    # the scan). As in polars, a null ActionType is not listed: `is_in` is null for it.
    action = F.col(s.ACTION_TYPE)
    unknown = F.array_sort(F.collect_list(F.when(~action.isin(*s.KNOWN_ACTION_TYPES), action)))
    per_file = (
        own.groupBy(FILE, s.ACTION_TYPE)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.coalesce(outside_hour, F.lit(False)).cast("int")).alias("outside_hour"),
        )
        .groupBy(FILE)
        .agg(
            F.sum("rows").alias("rows"),
            F.sum("outside_hour").alias("outside_hour"),
            unknown.alias("unknown"),
        )
        .withColumn("unknown", F.when(F.size("unknown") > 0, F.array_join(F.col("unknown"), ", ")))
        .join(fresh(per_rule), on=FILE, how="left")
        .collect()
    )
    names = list(rules)
    counted = ["rows", "outside_hour", *names]
    frame = pl.DataFrame(
        {
            FILE: [int(r[FILE]) for r in per_file],
            **{n: [r[n] for r in per_file] for n in counted},
            "unknown": [r["unknown"] for r in per_file],
        },
        schema={FILE: pl.UInt32, **{n: pl.UInt32 for n in counted}, "unknown": pl.String},
    )
    rows = pl.col("rows")
    return frame.sort(FILE).select(
        pl.col(FILE)
        .replace_strict(list(range(len(files))), list(files), return_dtype=pl.String)
        .alias("file"),
        rows,
        *[(pl.col(c).fill_null(0) / rows).alias(f"{c}_rate") for c in names],
        pl.col("unknown").alias("unknown_action_types"),
        # Rows outside their partition's hour but within the clock skew: absorbed by the margins.
        (pl.col("outside_hour") - pl.col("outside_partition").fill_null(0))
        .clip(0)
        .alias("skewed_rows"),
    )
