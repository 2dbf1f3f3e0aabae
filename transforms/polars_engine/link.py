"""Match each proxy leg to the evidence that names its real destination.

The semantics (docs/architecture.md, "Link semantics"):
- tier 1 matches on the socket (device, local port, proxy), tier 2 on the process (device, pid,
  creation time) for what is left, always within the tolerance on either side of the leg;
- matching is one-to-one: a leg takes at most one evidence row per source (network protection,
  HTTP CONNECT, TLS, plain-HTTP request), and an evidence row explains at most one leg;
- never guess, from either side: a leg whose candidates name different domains stays unlinked,
  and an evidence row that could belong to two open legs, with nothing to tell them apart,
  explains neither (it is folded as ambiguous evidence, never published on its own);
- the plain-HTTP requests of one socket are one connection's (keep-alive through the proxy): the
  first one names it, and the leg records how many distinct hosts they named.

Candidates are generated per time bucket two tolerances wide, so no join grows with the square
of one busy socket's or process's events. Keys are integer codes (device, domain), which keeps
the joins and window functions cheap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms.params import DayWindow, LinkParams
from proxylink.transforms.polars_engine.classify import (
    DEV,
    DOMAIN,
    DOMAIN_CODE,
    RIP,
    ROLE,
    TARGET_PORT,
)
from proxylink.transforms.rules import (
    EVIDENCE_PRIORITY,
    EVIDENCE_ROLES,
    HTTP,
    LEG,
    NP,
    NP2,
    REQ,
    ROLE_SOURCE,
    SSL,
)

LEG_ID = "leg_id"
EV_ID = "ev_id"
KIND = "kind"  # evidence kind for one-to-one: np and np2 are both network protection
ID = "_id"

REQ_HOSTS = "req_hosts"


@dataclass(frozen=True)
class LinkResult:
    """Leg links and what happened to every evidence row."""

    links: pl.DataFrame  # one row per linked leg: leg id, method, domain, primary evidence
    ambiguous: pl.DataFrame  # leg ids left unlinked because candidates disagreed or were shared
    used_evidence: pl.DataFrame  # evidence ids consumed, corroborating or contested (repeated)
    ambiguous_evidence: pl.DataFrame  # evidence ids that could belong to two or more legs
    # np2 rows whose leg is missing but whose socket was the proxy's: (ev id, proxy row id)
    proxied_targets: pl.DataFrame


def _bucket(tol_us: int) -> list[pl.Expr]:
    """A row's time bucket, two tolerances wide, and whether it lies in the bucket's first half
    (`early`: the rows within one tolerance of it lie in this bucket or the previous one)."""
    epoch = pl.col(s.TIMESTAMP).dt.epoch("us")
    return [(epoch // (2 * tol_us)).alias("bucket"), (epoch % (2 * tol_us) < tol_us).alias("early")]


def _legs(events: pl.LazyFrame, tol_us: int) -> pl.LazyFrame:
    return events.filter(pl.col(ROLE) == LEG).select(
        pl.col(ID).alias(LEG_ID),
        DEV,
        pl.col(s.LOCAL_PORT).alias("leg_port"),
        pl.col(s.TIMESTAMP).alias("leg_ts"),
        pl.col(s.REPORT_ID).alias("leg_rid"),
        pl.col(RIP).alias("leg_ip"),
        pl.col(s.REMOTE_PORT).alias("leg_rport"),
        pl.col(s.PROCESS_ID).alias("leg_pid"),
        pl.col(s.PROCESS_CREATION).alias("leg_pct"),
        *_bucket(tol_us),
    )


def _evidence(events: pl.LazyFrame, tol_us: int) -> pl.LazyFrame:
    role = pl.col(ROLE)
    return events.filter(role.is_in(EVIDENCE_ROLES)).select(
        pl.col(ID).alias(EV_ID),
        DEV,
        role,
        pl.when(role == NP2).then(pl.lit(NP)).otherwise(role).alias(KIND),
        pl.col(DOMAIN).alias("domain"),
        pl.col(DOMAIN_CODE).alias("dom"),
        pl.col(TARGET_PORT).alias("target_port"),
        pl.col(s.LOCAL_PORT).alias("ev_port"),
        pl.col(s.TIMESTAMP).alias("ev_ts"),
        pl.col(s.REPORT_ID).alias("ev_rid"),
        pl.col(RIP).alias("ev_ip"),
        pl.col(s.REMOTE_PORT).alias("ev_rport"),
        pl.col(s.PROCESS_ID).alias("ev_pid"),
        pl.col(s.PROCESS_CREATION).alias("ev_pct"),
        *_bucket(tol_us),
    )


def _spread(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Each row in its own bucket and in the neighbour its tolerance reaches into.

    Buckets are two tolerances wide, so the rows within one tolerance of a row lie in its own
    bucket and in the previous one (first half of the bucket) or the next one: joined on the
    bucket to rows that are not spread, each pair within the tolerance meets exactly once.
    Spreading the smaller side keeps the join small.
    """
    neighbour = rows.with_columns(
        pl.when(pl.col("early")).then(pl.col("bucket") - 1).otherwise(pl.col("bucket") + 1)
    )
    return pl.concat([rows, neighbour]).drop("early")


def _with_delta(pairs: pl.LazyFrame, tol_us: int) -> pl.LazyFrame:
    """The pairs within the tolerance, with how far the evidence lies from the leg. Lazy, so
    that the filter runs on the join's output as it comes instead of on all of it."""
    delta = (pl.col("ev_ts") - pl.col("leg_ts")).dt.total_microseconds()
    return pairs.with_columns(delta.alias("delta_us")).filter(pl.col("delta_us").abs() <= tol_us)


def _same_process() -> pl.Expr:
    return (pl.col("ev_pid") == pl.col("leg_pid")) & pl.col("ev_pct").eq_missing(pl.col("leg_pct"))


def socket_candidates(legs: pl.DataFrame, ev: pl.DataFrame, tol_us: int) -> pl.DataFrame:
    """Pairs on the same socket within the tolerance.

    A process-bearing evidence row must also come from the leg's process: a local port reused by
    another process is another connection. A `np2` row (socket shows the real target) matches
    on device, local port and process only.
    """
    pairs = _spread(legs.lazy().filter(pl.col("leg_port").is_not_null())).join(
        ev.lazy().filter(pl.col("ev_port").is_not_null()),
        left_on=[DEV, "leg_port", "bucket"],
        right_on=[DEV, "ev_port", "bucket"],
    )
    pairs = _with_delta(pairs, tol_us)
    has_process = pl.col("ev_pid").fill_null(0) != 0
    same_socket = (pl.col("ev_ip") == pl.col("leg_ip")) & (
        pl.col("ev_rport") == pl.col("leg_rport")
    )
    ok = (
        pl.when(pl.col(ROLE) == NP2)
        .then(_same_process())
        .otherwise(same_socket & (~has_process | _same_process()))
    )
    return pairs.filter(ok.fill_null(False)).collect()


def process_candidates(legs: pl.DataFrame, ev: pl.DataFrame, tol_us: int) -> pl.DataFrame:
    """Pairs from the same process within the tolerance, where the local ports cannot differ
    and the evidence socket, if known, is the leg's proxy. Network-protection rows only (the
    inspection sensor sees no process); a `np2` row's socket is the real target, so only its
    process and port count."""
    legs = legs.filter(pl.col("leg_pid").fill_null(0) != 0)
    # A target-IP row with a port met its leg's socket in the socket tier, if it has one here;
    # only those without one can be a leg's by process (the many direct rows stay out).
    role = pl.col(ROLE)
    kinds = (role == NP) | ((role == NP2) & pl.col("ev_port").is_null())
    ev = ev.filter(kinds & (pl.col("ev_pid").fill_null(0) != 0))
    pairs = (
        _spread(legs.lazy())
        .join(
            ev.lazy(),
            left_on=[DEV, "leg_pid", "leg_pct", "bucket"],
            right_on=[DEV, "ev_pid", "ev_pct", "bucket"],
            nulls_equal=True,
        )
        .with_columns(pl.col("leg_pid").alias("ev_pid"), pl.col("leg_pct").alias("ev_pct"))
    )
    pairs = _with_delta(pairs, tol_us)
    ports_agree = pl.col("ev_port").is_null() | pl.col("leg_port").is_null()
    ports_agree |= pl.col("ev_port") == pl.col("leg_port")
    socket_agrees = (pl.col(ROLE) == NP2) | pl.col("ev_ip").is_null()
    socket_agrees |= (pl.col("ev_ip") == pl.col("leg_ip")) & (
        pl.col("ev_rport").is_null() | (pl.col("ev_rport") == pl.col("leg_rport"))
    )
    return pairs.filter((ports_agree & socket_agrees).fill_null(False)).collect()


def first_requests(pairs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The plain-HTTP requests a leg's socket carried are that one connection's (keep-alive): only
    the first stands for them in the matching, and the leg counts the distinct hosts they named.
    Returns the pairs with one request per leg, and (leg id, `req_hosts`)."""
    req = pl.col(KIND) == REQ
    requests = pairs.filter(req)
    hosts = requests.group_by(LEG_ID).agg(pl.col("dom").n_unique().cast(pl.Int32).alias(REQ_HOSTS))
    first = requests.sort([LEG_ID, "ev_ts", "ev_rid", EV_ID]).filter(
        pl.col(LEG_ID).is_first_distinct()
    )
    if first.height == requests.height:
        return pairs, hosts
    # The other pairs and the first requests: no rule depends on the order of the pairs.
    return pl.concat([pairs.filter(~req), first]), hosts


def resolve(
    pairs: pl.DataFrame, max_rounds: int = 8
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One-to-one assignment in rounds; returns (accepted pairs, pairs left unresolved, evidence
    ids that stayed shared by two or more legs).

    Never guess, from either side. Each round, a leg whose remaining candidates name one domain
    takes its nearest evidence of each kind among the rows that are its alone; a row that two
    open legs could explain waits. A taken leg leaves the pool with its evidence, and so does the
    rest of its candidates that name its domain (corroborating: they may be its own). What is
    left can be clear in the next round: a leg taken with another domain tells a shared row
    which leg it is not. When no row is clear, legs that share rows are linked only where it
    cannot matter which leg takes which row (`_interchangeable`).
    """
    # Sorted by leg, the windows over legs below take polars' path for sorted groups: on the
    # bench day resolve took 0.56 s instead of 1.04 s, the sort 0.15 s. No rule depends on the
    # order of the pairs (every choice breaks its ties by ids).
    pairs = pairs.sort(LEG_ID)
    # A leg whose candidates are its alone, one of each kind and naming one domain, would be
    # given exactly those in the first round: take them without the sorting.
    alone = (pl.len().over(EV_ID) == 1) & (pl.len().over([LEG_ID, KIND]) == 1)
    pairs = pairs.with_columns(alone.alias("_alone"))
    own = pl.col("_alone").all().over(LEG_ID) & (pl.col("dom").n_unique().over(LEG_ID) == 1)
    pairs = pairs.with_columns(own.alias("_own")).drop("_alone")
    accepted: list[pl.DataFrame] = [pairs.filter(pl.col("_own")).drop("_own")]
    pairs = pairs.filter(~pl.col("_own")).drop("_own")
    for _ in range(max_rounds):
        if pairs.is_empty():
            break
        one_domain = pl.col("dom").n_unique().over(LEG_ID) == 1
        one_leg = pl.len().over(EV_ID) == 1  # a (leg, evidence) pair occurs once
        taken = _nearest_per_kind(pairs.filter(one_domain).filter(one_leg))
        if taken.is_empty():
            taken = _interchangeable(pairs)
        if taken.is_empty():
            break
        accepted.append(taken)
        linked = taken.select(LEG_ID, pl.col("dom").alias("_leg_dom")).unique(LEG_ID)
        corroborating = (
            pairs.join(linked, on=LEG_ID).filter(pl.col("dom") == pl.col("_leg_dom")).select(EV_ID)
        )
        pairs = (
            pairs.join(linked, on=LEG_ID, how="anti")
            .join(taken.select(EV_ID), on=EV_ID, how="anti")
            .join(corroborating, on=EV_ID, how="anti")
        )
    shared = pairs.filter(pl.len().over(EV_ID) > 1).select(EV_ID).unique()
    return pl.concat(accepted), pairs, shared


def _nearest_per_kind(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each leg's nearest candidate of each kind (ties by time, ReportId and id)."""
    return pairs.sort([pl.col("delta_us").abs(), "ev_ts", "ev_rid", EV_ID]).unique(
        [LEG_ID, KIND], keep="first", maintain_order=True
    )


def _interchangeable(pairs: pl.DataFrame) -> pl.DataFrame:
    """Links within groups of legs that share evidence, where every candidate names one domain
    and one kind of evidence has a row for every leg: whichever leg takes which row, each ends
    with that domain, so the nearest rows are taken. A group with fewer rows than legs stays as
    it is: which leg lacks the domain would be a guess."""
    groups = _components(pairs)
    n_legs = pl.col(LEG_ID).n_unique().over("_group")
    enough = (pl.col(EV_ID).n_unique().over(["_group", KIND]) >= n_legs).any().over("_group")
    one = pl.col("dom").n_unique().over("_group") == 1
    pool = groups.filter(one & enough).drop("_group")
    taken: list[pl.DataFrame] = []
    while not pool.is_empty():
        proposals = _nearest_per_kind(pool)
        won = proposals.sort([pl.col("delta_us").abs(), "leg_ts", "leg_rid", LEG_ID]).unique(
            [EV_ID], keep="first", maintain_order=True
        )
        taken.append(won)
        pool = pool.join(won.select(LEG_ID).unique(), on=LEG_ID, how="anti").join(
            won.select(EV_ID), on=EV_ID, how="anti"
        )
    return pl.concat(taken) if taken else pairs.clear()


def _components(pairs: pl.DataFrame, max_steps: int = 32) -> pl.DataFrame:
    """`pairs` with `_group`: the connected group of legs and evidence each pair belongs to
    (the smallest leg id reachable through shared candidates). Groups are a burst's few legs."""
    grouped = pairs.with_columns(pl.col(LEG_ID).alias("_group"))
    for _ in range(max_steps):
        step = grouped.with_columns(pl.col("_group").min().over(EV_ID)).with_columns(
            pl.col("_group").min().over(LEG_ID)
        )
        if step["_group"].equals(grouped["_group"]):
            return step
        grouped = step
    return grouped


def _summarise(accepted: pl.DataFrame, method: str, hosts: pl.DataFrame) -> pl.DataFrame:
    """One row per linked leg: its domain, primary evidence, the target port if known and how
    many distinct hosts its plain-HTTP requests named."""
    ranked = accepted.with_columns(
        pl.col(ROLE).replace_strict(EVIDENCE_PRIORITY, return_dtype=pl.Int8).alias("prio")
    ).sort([LEG_ID, "prio"])

    def port(role: str) -> pl.Expr:
        return pl.col("target_port").filter(pl.col(ROLE) == role).first()

    summary = ranked.group_by(LEG_ID, maintain_order=True).agg(
        pl.col("domain").first(),
        pl.col("dom").first(),
        pl.lit(method).alias("method"),
        pl.col("delta_us").first().alias("delta_us"),
        pl.col(ROLE).first().replace_strict(ROLE_SOURCE, return_dtype=pl.String).alias("source"),
        pl.col("ev_rid").first().alias("ev_rid"),
        pl.coalesce(port(HTTP), port(NP2), port(REQ)).alias("target_port"),
    )
    return summary.join(hosts, on=LEG_ID, how="left")


# Linking is local to a device, so a day's rows are linked in groups of whole devices of about
# this many rows: the candidate pairs of one group at a time bound the peak memory, whatever
# the size of the day, at the cost of one more filter pass over the narrow rows per group.
ROWS_PER_GROUP = 1_500_000


def link_by_device(
    rows: pl.LazyFrame, n_rows: int, window: DayWindow, params: LinkParams
) -> LinkResult:
    """`link` on groups of whole devices of about `ROWS_PER_GROUP` of the `n_rows` rows, the
    results put together: equal to linking all rows at once, because no rule looks beyond a
    device (`DEV` codes one DeviceId)."""
    groups = -(-n_rows // ROWS_PER_GROUP)
    if groups <= 1:
        return link(rows, window, params)
    parts = [link(rows.filter(pl.col(DEV) % groups == i), window, params) for i in range(groups)]
    return LinkResult(
        *(pl.concat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(LinkResult))
    )


def link(rows: pl.LazyFrame, window: DayWindow, params: LinkParams) -> LinkResult:
    """Link the legs of the context window. `rows` are valid, unique narrow rows with a unique
    `_id`; they stay lazy so that one filter pass picks the legs and evidence of the window."""
    tol_us = params.tolerance_ms * 1000
    in_context = pl.col(s.TIMESTAMP).is_between(
        window.context_start, window.context_end, closed="left"
    )
    events = rows.filter(in_context & pl.col(ROLE).is_in([LEG, *EVIDENCE_ROLES]))
    legs, ev = pl.collect_all([_legs(events, tol_us), _evidence(events, tol_us)])

    pairs1 = socket_candidates(legs, ev, tol_us)
    contested1 = pairs1.select(EV_ID)  # with repeats: only anti-joined and tested against
    pairs1, hosts = first_requests(pairs1)  # rebinding frees the full candidate frame
    taken1, left1, shared1 = resolve(pairs1)
    linked1 = _summarise(taken1, s.METHOD_SOCKET, hosts)

    # Corroboration: a port-less network-protection row naming the domain of a leg already
    # linked on its socket, in the same process, may be that leg's own: it is folded into it,
    # never given to another leg.
    spare = ev.join(contested1, on=EV_ID, how="anti")
    has_np = taken1.filter(pl.col(KIND) == NP).select(LEG_ID).unique()
    linked_legs = legs.join(linked1.select(LEG_ID, pl.col("dom").alias("leg_dom")), on=LEG_ID).join(
        has_np, on=LEG_ID, how="anti"
    )
    corroborating = (
        process_candidates(linked_legs, spare, tol_us)
        .filter(pl.col("dom") == pl.col("leg_dom"))
        .select(EV_ID)
        .unique()
    )

    spare = spare.join(corroborating, on=EV_ID, how="anti")
    open_legs = legs.join(linked1.select(LEG_ID), on=LEG_ID, how="anti").join(
        left1.select(LEG_ID).unique(), on=LEG_ID, how="anti"
    )
    pairs2 = process_candidates(open_legs, spare, tol_us)
    taken2, left2, shared2 = resolve(pairs2)
    linked2 = _summarise(taken2, s.METHOD_PROCESS, hosts.clear())

    used = pl.concat([contested1, corroborating, pairs2.select(EV_ID)])
    proxied = proxied_targets(ev.join(used, on=EV_ID, how="anti"), tol_us)
    used = pl.concat([used, proxied.select(pl.col("proxy_ev").alias(EV_ID))])
    ambiguous = pl.concat([left1.select(LEG_ID), left2.select(LEG_ID)]).unique()
    return LinkResult(
        links=pl.concat([linked1, linked2]),
        ambiguous=ambiguous,
        used_evidence=used,
        ambiguous_evidence=pl.concat([shared1, shared2]).unique(),
        proxied_targets=proxied.unique(EV_ID),
    )


def proxied_targets(spare: pl.DataFrame, tol_us: int) -> pl.DataFrame:
    """Target-IP network-protection rows whose leg is missing, shown to have gone through the
    proxy by an unused inspection row on the proxy socket, within the tolerance, naming their
    domain: on their local port, or, for a row without one, on the device (one process does not
    reach one name both directly and through the proxy at once). Each stands for its connection
    as evidence only (not as a direct one); the nearest such inspection row gives the proxy.
    Returns (ev id, proxy row id)."""
    targets = spare.filter(pl.col(ROLE) == NP2)
    inspected = spare.filter(pl.col(ROLE).is_in([HTTP, REQ, SSL])).select(
        DEV,
        pl.col("ev_port").alias("leg_port"),
        pl.col("ev_ts").alias("leg_ts"),
        pl.col(EV_ID).alias("proxy_ev"),
        pl.col("dom").alias("proxy_dom"),
        "bucket",
    )
    with_port = targets.filter(pl.col("ev_port").is_not_null())
    by_port = (
        inspected.lazy()
        .join(
            _spread(with_port.lazy()),
            left_on=[DEV, "leg_port", "bucket"],
            right_on=[DEV, "ev_port", "bucket"],
        )
        .filter(pl.col("dom") == pl.col("proxy_dom"))
    )
    without = targets.filter(pl.col("ev_port").is_null())
    by_name = inspected.lazy().join(
        _spread(without.lazy()),
        left_on=[DEV, "proxy_dom", "bucket"],
        right_on=[DEV, "dom", "bucket"],
    )
    columns = [EV_ID, "proxy_ev", "ev_ts", "leg_ts"]
    both = pl.concat([by_port.select(columns), by_name.select(columns)])
    pairs = _with_delta(both, tol_us).collect()
    nearest = pairs.sort([pl.col("delta_us").abs(), "proxy_ev"])
    return nearest.unique(EV_ID, keep="first", maintain_order=True).select(EV_ID, "proxy_ev")
