"""The Spark engine: the polars engine's semantics on pyspark DataFrames, for lakes that outgrow
one machine.

Like the polars engine it reads each row's content twice: narrow to link, wide to assemble day
D. The narrow frame of every row is materialised once (it feeds dedupe, link and the profile),
and so is the day's decision frame, which the lazy curated and rejected frames join to the raw
rows when the job writes them (see frames.py for why frames are checkpointed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from transforms.aggregates import DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE
from transforms.engine import DayOutput
from transforms.params import DayWindow, LinkParams
from transforms.psl import SuffixRules
from transforms.spark_engine import aggregates, assemble, classify, link, normalise
from transforms.spark_engine.frames import materialise

UTC_NAMES = ("UTC", "Etc/UTC", "GMT", "Z", "+00:00")


def check_session(frame: DataFrame) -> None:
    """The session settings the semantics rely on (jobs.spark_session sets them): timestamps
    are spelled in UTC in rejected rows, and JSON that repeats a key parses, as in polars."""
    conf = frame.sparkSession.conf
    zone = conf.get("spark.sql.session.timeZone")
    if zone not in UTC_NAMES:
        raise ValueError(
            f"the Spark engine needs spark.sql.session.timeZone=UTC (the session has {zone})"
        )
    if str(conf.get("spark.sql.variant.allowDuplicateKeys", "false")).lower() != "true":
        raise ValueError("the Spark engine needs spark.sql.variant.allowDuplicateKeys=true")


class SparkEngine:
    """Build day D with pyspark; `raw` comes from jobs.spark_lake.scan_lake."""

    name = "spark"

    def build_day(
        self,
        raw: DataFrame,
        window: DayWindow,
        params: LinkParams,
        files: Sequence[str],
    ) -> DayOutput[DataFrame]:
        check_session(raw)
        typed = normalise.normalise(raw, params)
        narrow = classify.classify(typed, params)
        keyed = materialise(assemble.with_ids(narrow))
        events = assemble.dedupe(keyed, raw)
        valid = events.filter(F.col(assemble.FATE) == assemble.OK)
        result = link.link(valid, window, params)
        decisions = materialise(assemble.decide(events, result, window))
        counts, reasons = assemble.fate_counts(decisions)
        stats = assemble.link_stats(decisions)
        profile = assemble.input_profile(events, raw, files, window)
        counts["skewed_rows"] = int(profile["skewed_rows"].sum())
        return DayOutput(
            curated=assemble.curated_rows(raw, decisions, window, params),
            rejects=assemble.rejected_rows(raw, decisions, files, window, params),
            counts=counts,
            reject_reasons=reasons,
            link_stats=stats,
            input_profile=profile,
            evidence=assemble.evidence_rows(raw, decisions, window, params),
        )

    def aggregates(
        self, curated: DataFrame, evidence: DataFrame, rules: SuffixRules, day: date
    ) -> dict[str, DataFrame]:
        return {
            DOMAIN_DAILY_TABLE: aggregates.domain_daily(curated, rules, day),
            PROXY_COVERAGE_TABLE: aggregates.proxy_coverage(curated, evidence, day),
        }
