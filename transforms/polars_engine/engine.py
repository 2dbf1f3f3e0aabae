"""The embedded polars engine: lazy scans, one eager link step on narrow columns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from transforms.aggregates import DOMAIN_DAILY_TABLE, PROXY_COVERAGE_TABLE
from transforms.engine import DayOutput
from transforms.params import DayWindow, LinkParams
from transforms.polars_engine import aggregates, assemble, classify, link, normalise
from transforms.psl import SuffixRules


class PolarsEngine:
    """Reads each row's content twice: once narrow to link, once wide to assemble day D.

    Linking needs a dozen columns of every row in the context window; the wide pass needs only
    day D's output rows. Keeping the wide columns out of the link step keeps memory flat.
    """

    name = "polars"

    def build_day(
        self,
        raw: pl.LazyFrame,
        window: DayWindow,
        params: LinkParams,
        files: Sequence[str],
    ) -> DayOutput[pl.LazyFrame]:
        typed = normalise.normalise(raw, params)
        # One chunk: every later eager step would otherwise copy the frame to align chunks.
        narrow = classify.classify(typed, params).collect().rechunk()
        events = assemble.dedupe(narrow, raw)
        valid = events.lazy().filter(pl.col(assemble.FATE) == assemble.OK)
        result = link.link(valid, window, params)
        decisions = assemble.decide(events, result, window)
        profile = assemble.input_profile(events, raw, list(files), window)
        counts = assemble.fate_counts(decisions)
        counts["skewed_rows"] = int(profile["skewed_rows"].sum())
        return DayOutput(
            curated=assemble.curated_rows(raw, decisions, window),
            rejects=assemble.rejected_rows(raw, decisions, list(files), window),
            counts=counts,
            reject_reasons=assemble.reject_reasons(decisions),
            link_stats=assemble.link_stats(decisions),
            input_profile=profile,
            evidence=assemble.evidence_rows(raw, decisions),
        )

    def aggregates(
        self, curated: pl.LazyFrame, evidence: pl.LazyFrame, rules: SuffixRules, day: date
    ) -> dict[str, pl.LazyFrame]:
        return {
            DOMAIN_DAILY_TABLE: aggregates.domain_daily(curated, rules, day),
            PROXY_COVERAGE_TABLE: aggregates.proxy_coverage(curated, evidence, day),
        }
