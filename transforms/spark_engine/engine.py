"""The Spark engine: the polars engine's semantics on pyspark DataFrames, for lakes that outgrow
one machine.

Like the polars engine it reads each row's content twice: narrow to link, wide to assemble day
D. The narrow frame of every row is persisted once (it feeds dedupe, link and the profile), and
so is the day's decision frame, which the lazy curated and rejected frames join to the raw rows
when the job writes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from transforms.engine import DayOutput
from transforms.params import DayWindow, LinkParams
from transforms.spark_engine import assemble, classify, link, normalise

UTC_NAMES = ("UTC", "Etc/UTC", "GMT", "Z", "+00:00")


def require_utc(frame: DataFrame) -> None:
    """Texts of timestamps (rejected rows, raw shadows) are written in the session time zone."""
    zone = frame.sparkSession.conf.get("spark.sql.session.timeZone")
    if zone not in UTC_NAMES:
        raise ValueError(
            f"the Spark engine needs spark.sql.session.timeZone=UTC (the session has {zone})"
        )


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
        require_utc(raw)
        typed = normalise.normalise(raw, params)
        narrow = classify.classify(typed, params)
        keyed = assemble.with_ids(narrow).persist(StorageLevel.MEMORY_AND_DISK)
        events, flags = assemble.dedupe(keyed, raw)
        valid = events.filter(F.col(assemble.FATE) == assemble.OK)
        result = link.link(valid, window, params)
        decisions = assemble.decide(events, result, window).persist(StorageLevel.MEMORY_AND_DISK)
        counts, reasons = assemble.fate_counts(decisions)
        stats = assemble.link_stats(decisions)
        profile = assemble.input_profile(events, raw, files, window)
        for frame in (*result.cached, keyed, *([flags] if flags is not None else [])):
            frame.unpersist()
        return DayOutput(
            curated=assemble.curated_rows(raw, decisions, window, params),
            rejects=assemble.rejected_rows(raw, decisions, files, window, params),
            counts=counts,
            reject_reasons=reasons,
            link_stats=stats,
            input_profile=profile,
        )
