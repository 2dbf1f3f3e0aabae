"""Match each proxy leg to the evidence that names its real destination (polars semantics).

The tiers, the corroboration pass, the one-to-one rounds and every tie-break are those of
transforms/polars_engine/link.py. Tie-breaks never reach the row ids: pairs of one leg share its
device, and valid rows are unique by (device, Timestamp, ReportId), so |delta|, the timestamp and
the ReportId already order them totally.

Bounded work and skew: candidate pairs are generated per time bucket two tolerances wide, so the
join keys are (device, local port or process, bucket) and a busy process spreads over as many
keys (and tasks) as it has busy buckets; no key holds more than two tolerances of one socket's or
one process's events. The windows of the rounds partition by leg or evidence id, which are
unique. Spark's adaptive skew-join handling splits what is left of a hot bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from transforms import schema as s
from transforms.params import DayWindow, LinkParams
from transforms.polars_engine.link import EV_ID, ID, KIND, LEG_ID
from transforms.spark_engine.classify import (
    DOMAIN,
    EVIDENCE_ROLES,
    HTTP,
    LEG,
    NP,
    NP2,
    ROLE,
    SSL,
    TARGET_PORT,
)
from transforms.spark_engine.frames import materialise
from transforms.spark_engine.normalise import epoch_us, micros

__all__ = ["EV_ID", "ID", "LEG_ID", "LinkResult", "link"]

DEV = s.DEVICE_ID
_PRIORITY = {NP: 0, NP2: 0, HTTP: 1, SSL: 2}
_ROLE_ACTION = {NP: s.CONNECTION_SUCCESS, NP2: s.CONNECTION_SUCCESS, HTTP: s.HTTP_INSPECTED}
_ROLE_ACTION[SSL] = s.SSL_INSPECTED


@dataclass(frozen=True)
class LinkResult:
    """Leg links and what happened to every evidence row."""

    links: DataFrame  # one row per linked leg: leg id, method, domain, primary evidence
    ambiguous: DataFrame  # leg ids left unlinked because candidates disagreed
    used_evidence: DataFrame  # evidence ids consumed, corroborating or contested


def _bucket(tol_us: int) -> Column:
    us = micros(s.TIMESTAMP)
    return (us - F.pmod(us, F.lit(2 * tol_us))) / (2 * tol_us)


# The socket and process columns both sides of a pair carry, as `leg_*` and `ev_*`.
_SIDE = {
    "port": s.LOCAL_PORT,
    "ts": s.TIMESTAMP,
    "rid": s.REPORT_ID,
    "ip": s.REMOTE_IP,
    "rport": s.REMOTE_PORT,
    "pid": s.PROCESS_ID,
    "pct": s.PROCESS_CREATION,
}


def _side(prefix: str) -> list[Column]:
    return [F.col(column).alias(f"{prefix}_{name}") for name, column in _SIDE.items()]


def _legs(events: DataFrame, tol_us: int) -> DataFrame:
    return events.filter(F.col(ROLE) == LEG).select(
        F.col(ID).alias(LEG_ID),
        DEV,
        *_side("leg"),
        _bucket(tol_us).cast("bigint").alias("bucket"),
    )


def _evidence(events: DataFrame, tol_us: int) -> DataFrame:
    role = F.col(ROLE)
    return events.filter(role.isin(*EVIDENCE_ROLES)).select(
        F.col(ID).alias(EV_ID),
        DEV,
        role,
        F.when(role == NP2, F.lit(NP)).otherwise(role).alias(KIND),
        F.col(DOMAIN).alias("domain"),
        F.col(TARGET_PORT).alias("target_port"),
        *_side("ev"),
        _bucket(tol_us).cast("bigint").alias("bucket"),
        (F.pmod(micros(s.TIMESTAMP), F.lit(2 * tol_us)) < tol_us).alias("early"),
    )


def _spread(evidence: DataFrame) -> DataFrame:
    """Each evidence row in its own bucket and in the neighbour its tolerance reaches into."""
    neighbour = evidence.withColumn(
        "bucket", F.when(F.col("early"), F.col("bucket") - 1).otherwise(F.col("bucket") + 1)
    )
    return evidence.unionByName(neighbour)


def _with_delta(pairs: DataFrame, tol_us: int) -> DataFrame:
    delta = micros("ev_ts") - micros("leg_ts")
    return pairs.withColumn("delta_us", delta).filter(F.abs(F.col("delta_us")) <= tol_us)


def _same_process() -> Column:
    return (F.col("ev_pid") == F.col("leg_pid")) & F.col("ev_pct").eqNullSafe(F.col("leg_pct"))


def socket_candidates(legs: DataFrame, ev: DataFrame, tol_us: int) -> DataFrame:
    """Pairs on the same socket within the tolerance (see the polars engine)."""
    right = _spread(ev.filter(F.col("ev_port").isNotNull()))
    pairs = legs.filter(F.col("leg_port").isNotNull()).join(
        right,
        (legs[DEV] == right[DEV])
        & (legs["leg_port"] == right["ev_port"])
        & (legs["bucket"] == right["bucket"]),
    )
    pairs = pairs.drop(right[DEV]).drop(right["bucket"])
    pairs = _with_delta(pairs, tol_us)
    has_process = F.coalesce(F.col("ev_pid"), F.lit(0)) != 0
    same_socket = (F.col("ev_ip") == F.col("leg_ip")) & (F.col("ev_rport") == F.col("leg_rport"))
    ok = F.when(F.col(ROLE) == NP2, _same_process()).otherwise(
        same_socket & (~has_process | _same_process())
    )
    return pairs.filter(F.coalesce(ok, F.lit(False)))


def process_candidates(legs: DataFrame, ev: DataFrame, tol_us: int) -> DataFrame:
    """Pairs from the same process within the tolerance, where the local ports cannot differ
    and the evidence socket, if known, is the leg's proxy. The creation time matches null to
    null, as in the polars join (`nulls_equal=True`)."""
    legs = legs.filter(F.coalesce(F.col("leg_pid"), F.lit(0)) != 0)
    ev = ev.filter((F.col(ROLE) == NP) & (F.coalesce(F.col("ev_pid"), F.lit(0)) != 0))
    right = _spread(ev)
    pairs = legs.join(
        right,
        (legs[DEV] == right[DEV])
        & (legs["leg_pid"] == right["ev_pid"])
        & legs["leg_pct"].eqNullSafe(right["ev_pct"])
        & (legs["bucket"] == right["bucket"]),
    )
    pairs = pairs.drop(right[DEV]).drop(right["bucket"])
    pairs = _with_delta(pairs, tol_us)
    ports_agree = F.col("ev_port").isNull() | F.col("leg_port").isNull()
    socket_agrees = F.col("ev_ip").isNull() | (
        (F.col("ev_ip") == F.col("leg_ip"))
        & (F.col("ev_rport").isNull() | (F.col("ev_rport") == F.col("leg_rport")))
    )
    return pairs.filter(F.coalesce(ports_agree & socket_agrees, F.lit(False)))


def _first(frame: DataFrame, by: list[str], order: list[Column | str]) -> DataFrame:
    """polars `sort(order).unique(by, keep="first")`: the first row of each group."""
    w = Window.partitionBy(*by).orderBy(*order)
    return frame.withColumn("_n", F.row_number().over(w)).filter(F.col("_n") == 1).drop("_n")


def resolve(pairs: DataFrame, max_rounds: int = 4) -> tuple[DataFrame, DataFrame]:
    """One-to-one assignment in rounds; returns (accepted pairs, pairs left unresolved).

    `pairs` must be materialised: an empty pool then costs one check. Each round materialises
    its pool, which keeps the plan from growing with the rounds and lets an empty pool or an
    empty round end the loop, as in the polars engine. The pool stays partitioned by leg, so
    the windows by leg and by (leg, kind) need no shuffle; only the evidence side does.
    """
    if pairs.isEmpty():
        return pairs, pairs
    abs_delta = F.abs(F.col("delta_us"))
    by_leg = Window.partitionBy(LEG_ID)
    one_domain = F.min("domain").over(by_leg) == F.max("domain").over(by_leg)
    # A leg whose candidates are its alone (no other leg's), one of each kind and naming one
    # domain, would be given exactly those in the first round: take them without the rounds.
    pairs = pairs.withColumn("_ev_n", F.count(F.lit(1)).over(Window.partitionBy(EV_ID)))
    pairs = pairs.repartition(LEG_ID)
    kind_n = F.count(F.lit(1)).over(Window.partitionBy(LEG_ID, KIND))
    pairs = pairs.withColumn("_alone", ((F.col("_ev_n") == 1) & (kind_n == 1)).cast("int"))
    own = (F.min("_alone").over(by_leg) == 1) & one_domain
    pairs = materialise(pairs.withColumn("_own", own).drop("_ev_n", "_alone"))
    accepted = [pairs.filter(F.col("_own")).drop("_own")]
    pairs = pairs.filter(~F.col("_own")).drop("_own")
    for _ in range(max_rounds):
        if pairs.isEmpty():
            break
        clear = pairs.withColumn("_clear", one_domain).filter(F.col("_clear")).drop("_clear")
        proposals = _first(clear, [LEG_ID, KIND], [abs_delta, "ev_ts", "ev_rid", EV_ID])
        taken = materialise(_first(proposals, [EV_ID], [abs_delta, "leg_ts", "leg_rid", LEG_ID]))
        if taken.isEmpty():
            break
        accepted.append(taken)
        pairs = materialise(
            pairs.join(taken.select(EV_ID), on=EV_ID, how="left_anti").join(
                taken.select(LEG_ID).distinct(), on=LEG_ID, how="left_anti"
            )
        )
    result = accepted[0]
    for frame in accepted[1:]:
        result = result.unionByName(frame)
    return result, pairs


def _summarise(accepted: DataFrame, method: str) -> DataFrame:
    """One row per linked leg: its domain, primary evidence and the target port if known."""
    prio = F.lit(None).cast("int")
    for role, rank in _PRIORITY.items():
        prio = F.when(F.col(ROLE) == role, F.lit(rank)).otherwise(prio)
    source = F.lit(None).cast("string")
    for role, action in _ROLE_ACTION.items():
        source = F.when(F.col(ROLE) == role, F.lit(action)).otherwise(source)
    ranked = accepted.withColumn("prio", prio.cast("int")).withColumn("source", source)
    primary = F.struct("domain", "delta_us", "source", "ev_rid")
    return (
        ranked.groupBy(LEG_ID)
        .agg(
            F.min_by(primary, "prio").alias("_p"),
            F.max(F.when(F.col(ROLE) == HTTP, F.col("target_port"))).alias("_http_port"),
            F.max(F.when(F.col(ROLE) == NP2, F.col("target_port"))).alias("_np2_port"),
        )
        .select(
            LEG_ID,
            F.col("_p.domain").alias("domain"),
            F.lit(method).alias("method"),
            F.col("_p.delta_us").alias("delta_us"),
            F.col("_p.source").alias("source"),
            F.col("_p.ev_rid").alias("ev_rid"),
            F.coalesce("_http_port", "_np2_port").alias("target_port"),
        )
    )


def link(rows: DataFrame, window: DayWindow, params: LinkParams) -> LinkResult:
    """Link the legs of the context window. `rows` are valid, unique narrow rows with `_id`."""
    tol_us = params.tolerance_ms * 1000
    ts = micros(s.TIMESTAMP)
    lo, hi = epoch_us(window.context_start), epoch_us(window.context_end)
    in_context = (ts >= lo) & (ts < hi)
    events = rows.filter(in_context & F.col(ROLE).isin(LEG, *EVIDENCE_ROLES))
    legs = _legs(events, tol_us)
    ev = _evidence(events, tol_us)

    pairs1 = materialise(socket_candidates(legs, ev, tol_us))
    taken1, left1 = resolve(pairs1)
    linked1 = _summarise(taken1, s.METHOD_SOCKET)
    contested1 = pairs1.select(EV_ID).distinct()

    # Corroboration: a port-less NP row naming the domain of a leg already linked on its socket,
    # in the same process, is that leg's own evidence, not a rival for another leg.
    spare = ev.join(contested1, on=EV_ID, how="left_anti")
    has_np = taken1.filter(F.col(KIND) == NP).select(LEG_ID).distinct()
    linked_legs = legs.join(
        linked1.select(LEG_ID, F.col("domain").alias("leg_dom")), on=LEG_ID
    ).join(has_np, on=LEG_ID, how="left_anti")
    corr_pairs = materialise(
        process_candidates(linked_legs, spare, tol_us).filter(F.col("domain") == F.col("leg_dom"))
    )
    taken_corr, _ = resolve(corr_pairs)

    spare = spare.join(taken_corr.select(EV_ID), on=EV_ID, how="left_anti")
    open_legs = legs.join(linked1.select(LEG_ID), on=LEG_ID, how="left_anti").join(
        left1.select(LEG_ID).distinct(), on=LEG_ID, how="left_anti"
    )
    pairs2 = materialise(process_candidates(open_legs, spare, tol_us))
    taken2, left2 = resolve(pairs2)
    linked2 = _summarise(taken2, s.METHOD_PROCESS)

    used = (
        contested1.unionByName(taken_corr.select(EV_ID))
        .unionByName(pairs2.select(EV_ID))
        .distinct()
    )
    ambiguous = left1.select(LEG_ID).unionByName(left2.select(LEG_ID)).distinct()
    return LinkResult(
        links=linked1.unionByName(linked2),
        ambiguous=ambiguous,
        used_evidence=used,
    )
