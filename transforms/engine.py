"""What building a day produces, and how the counts of device-disjoint parts add up.

There is one link core: the polars engine (`transforms/polars_engine`). It builds day D from raw
rows into frames (curated, rejected and evidence rows) and a `DaySummary` of what it counted.
Linking is local to a device, so the Spark runner builds partitions that each hold whole devices
with that same core, then adds up their summaries: every count is a sum, and the rates and the
per-file profile are derived from the sums only at the end. A summary of all of a day's rows and
the sum of the summaries of its device partitions are equal.

`DayResult` is what the gate and the manifest read: the finished numbers of a day, whichever
runner built it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import polars as pl

ENGINES = ("polars", "spark")

# A build names its inner steps through this hook, so that the job that owns the clock can time
# them (`jobs.timing.Timer.detail`); the transforms themselves never read a clock.
Steps = Callable[[str], AbstractContextManager[object]]


def no_steps(name: str) -> AbstractContextManager[object]:
    """The default `Steps`: nothing is timed."""
    return nullcontext()


# One row per input file index of day D's own partitions; every column but `unknown` adds up.
FILE_INDEX = "_file"
INPUT_COUNTS = pl.Schema(
    {
        FILE_INDEX: pl.UInt32(),
        "rows": pl.Int64(),
        "outside_hour": pl.Int64(),
        "null_key": pl.Int64(),
        "bad_value": pl.Int64(),
        "bad_port": pl.Int64(),
        "outside_partition": pl.Int64(),
        "bad_host_name": pl.Int64(),  # named a destination that is not a host name (not rejected)
        "unknown": pl.List(pl.String()),  # ActionTypes Defender does not document, distinct
    }
)
_RATES = ("null_key", "bad_value", "bad_port", "outside_partition", "bad_host_name")

# Link counts that add up; the rates of `link_stats` are derived from them.
LINK_COUNTS = (
    "devices",
    "devices_with_evidence",
    "legs",
    "legs_linked",
    "legs_on_devices_with_evidence",
    "legs_linked_on_devices_with_evidence",
)


class EngineUnavailable(RuntimeError):
    """The requested engine cannot run here; the message says what to install or change."""


@dataclass(frozen=True)
class OutputFrames:
    """The output rows of some whole files of a build, still lazy: the job streams them into
    their files together, in one pass over those files' raw rows."""

    curated: pl.LazyFrame
    rejects: pl.LazyFrame
    # One row, one count: output rows that were set beside another row's decisions. The two
    # frames above share one read of the raw rows; a count above zero is a bug, never published.
    misaligned: pl.LazyFrame


@dataclass(frozen=True)
class DayFrames:
    """The rows a build produced, in chunks of whole files: one chunk at a time bounds the
    memory of the wide pass, whatever the size of the day."""

    chunks: tuple[OutputFrames, ...]
    # Per device, the evidence rows that are not rejected or duplicates, folded or not: how
    # many (what `proxy_coverage` counts as its evidence) and its last name on them
    # (`aggregates.device_names`), from the narrow rows.
    evidence: pl.DataFrame


@dataclass(frozen=True)
class DayResult:
    """The finished numbers of day D: counts, reject reasons, link statistics, input profile."""

    counts: dict[str, int]
    reject_reasons: dict[str, int]
    link_stats: dict[str, float | int]
    # One row per input file of day D with the share of rows that broke each input rule.
    input_profile: pl.DataFrame


@dataclass(frozen=True)
class DaySummary:
    """What one build counted, in a form that adds up across device-disjoint builds."""

    fates: Mapping[str, int]  # rows per fate and per link method, legs, ambiguous legs
    reject_reasons: Mapping[str, int]
    link_counts: Mapping[str, int]  # LINK_COUNTS
    input_counts: pl.DataFrame  # INPUT_COUNTS

    @classmethod
    def merge(cls, parts: Sequence[DaySummary]) -> DaySummary:
        """The summary of the union of device-disjoint builds."""
        if not parts:
            raise ValueError("nothing to merge")
        inputs = (
            pl.concat([p.input_counts for p in parts])
            .group_by(FILE_INDEX)
            .agg(
                *[pl.col(c).sum() for c in INPUT_COUNTS if c not in (FILE_INDEX, "unknown")],
                pl.col("unknown").explode().drop_nulls().unique().sort(),
            )
        )
        return cls(
            fates=_add([p.fates for p in parts]),
            reject_reasons=_add([p.reject_reasons for p in parts]),
            link_counts=_add([p.link_counts for p in parts]),
            input_counts=inputs.select(INPUT_COUNTS.keys()).cast(INPUT_COUNTS).sort(FILE_INDEX),
        )

    def result(self, files: Sequence[str]) -> DayResult:
        """The day's finished numbers; `files[i]` is the path of input file index i."""
        profile = self.input_profile(files)
        counts = dict(self.fates)
        counts["skewed_rows"] = int(profile["skewed_rows"].sum())
        reasons = {k: v for k, v in sorted(self.reject_reasons.items()) if v}
        return DayResult(counts, reasons, self.link_stats(), profile)

    def link_stats(self) -> dict[str, float | int]:
        """Link rate overall and on devices that show any evidence (network protection on)."""
        c = {k: int(self.link_counts.get(k, 0)) for k in LINK_COUNTS}
        legs, on_protected = c["legs"], c["legs_on_devices_with_evidence"]
        return {
            "devices": c["devices"],
            "devices_with_evidence": c["devices_with_evidence"],
            "legs": legs,
            "legs_linked": c["legs_linked"],
            "link_rate": round(c["legs_linked"] / legs, 6) if legs else 0.0,
            "legs_on_devices_with_evidence": on_protected,
            "link_rate_devices_with_evidence": (
                round(c["legs_linked_on_devices_with_evidence"] / on_protected, 6)
                if on_protected
                else 0.0
            ),
        }

    def input_profile(self, files: Sequence[str]) -> pl.DataFrame:
        """One row per input file of day D: its rows and the share that broke each rule.

        This is what the input suite validates: rates over every row, so that the expectations
        run on a few dozen rows instead of millions.
        """
        rows = pl.col("rows")
        unknown = pl.col("unknown").list.join(", ")
        return self.input_counts.sort(FILE_INDEX).select(
            pl.col(FILE_INDEX)
            .replace_strict(list(range(len(files))), list(files), return_dtype=pl.String)
            .alias("file"),
            rows.cast(pl.UInt32),
            *[(pl.col(c) / rows).alias(f"{c}_rate") for c in _RATES],
            pl.when(pl.col("unknown").list.len() > 0).then(unknown).alias("unknown_action_types"),
            # Rows outside their partition's hour but within the clock skew: absorbed by margins.
            (pl.col("outside_hour") - pl.col("outside_partition")).clip(0).alias("skewed_rows"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fates": dict(self.fates),
            "reject_reasons": dict(self.reject_reasons),
            "link_counts": dict(self.link_counts),
            "input_counts": self.input_counts.to_dicts(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DaySummary:
        return cls(
            fates=dict(data["fates"]),
            reject_reasons=dict(data["reject_reasons"]),
            link_counts=dict(data["link_counts"]),
            input_counts=pl.DataFrame(data["input_counts"], schema=INPUT_COUNTS),
        )


def _add(parts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + int(value)
    return total
