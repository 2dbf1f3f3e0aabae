"""The one interface every engine implements, so jobs never branch on the engine.

An engine turns the raw rows of day D and its context into curated rows, rejected rows and
counts. It does no I/O: frames in, frames out. Jobs read and write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Generic, Protocol, TypeVar

import polars as pl

from transforms.params import DayWindow, LinkParams
from transforms.psl import SuffixRules

FrameT = TypeVar("FrameT")


@dataclass(frozen=True)
class DayOutput(Generic[FrameT]):
    """What one day's build produced; frames may still be lazy."""

    curated: FrameT
    rejects: FrameT
    counts: dict[str, int]
    reject_reasons: dict[str, int]
    link_stats: dict[str, float | int] = field(default_factory=dict)
    # One row per input file of day D with the share of rows that broke each input rule: small
    # whatever the engine, so it is always a polars frame.
    input_profile: pl.DataFrame = field(default_factory=pl.DataFrame)
    # The day's evidence rows (DeviceId, DeviceName, Timestamp) that are not rejected or
    # duplicates, folded or not: what `proxy_coverage` counts as a device's evidence.
    evidence: FrameT | None = None


class Engine(Protocol[FrameT]):
    """Build day D from raw rows. `files[i]` names the file of rows whose `_file` is i."""

    name: str

    def build_day(
        self, raw: FrameT, window: DayWindow, params: LinkParams, files: Sequence[str]
    ) -> DayOutput[FrameT]: ...

    def aggregates(
        self, curated: FrameT, evidence: FrameT, rules: SuffixRules, day: date
    ) -> dict[str, FrameT]:
        """The summary tables of day D (`transforms.aggregates`) by table name, computed from
        the day's curated rows as staged (so they agree with what is published)."""
        ...


class EngineUnavailable(RuntimeError):
    """The requested engine cannot run here; the message says what to install or change."""


ENGINES = ("polars", "spark")
