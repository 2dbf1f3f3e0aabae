"""The link core: day D from raw rows, lazily, with one eager link step on narrow columns."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from proxylink.transforms.engine import DayFrames, DaySummary, OutputFrames, Steps, no_steps
from proxylink.transforms.params import DayWindow, LinkParams
from proxylink.transforms.polars_engine import assemble, classify, link
from proxylink.transforms.rules import OK


def build_day(
    raw: pl.LazyFrame,
    window: DayWindow,
    params: LinkParams,
    files: Sequence[str],
    steps: Steps = no_steps,
    parts: Sequence[pl.LazyFrame] | None = None,
) -> tuple[DayFrames, DaySummary]:
    """Build day D from the raw rows of its context window; `files[i]` names file index i.

    Reads each row's content twice: once narrow to link, once wide for the rows that leave the
    job (curated, rejected, evidence), in one pass that the three share. Linking needs a dozen
    columns of every row in the context window; the wide pass needs only day D's output rows,
    and streams. Keeping the wide columns out of the link step keeps memory flat.

    `raw` may hold any set of whole devices (every row of each device it has): linking,
    dedupe and every count are local to a device, so the summaries of device-disjoint parts
    add up to the summary of the whole (`DaySummary.merge`).

    `parts[i]`, when given, holds the rows of file index i of `raw` alone, in file order: the
    wide pass then sets each file's output rows beside their decisions by position, without a
    join, a few files at a time (`assemble.wide_rows`).
    """
    with steps("classify"):
        # One chunk: every later eager step would otherwise copy the frame to align chunks.
        # Column by column, so that the copy never holds more than one column twice.
        classified = classify.classify(raw, params)
        narrow = pl.DataFrame([classified.drop_in_place(c).rechunk() for c in classified.columns])
        del classified
    with steps("dedupe"):
        events = assemble.dedupe(narrow, raw)
        del narrow
    with steps("link"):
        valid = events.lazy().filter(pl.col(assemble.FATE) == OK)
        result = link.link_by_device(valid, events.height, window, params)
        del valid
    # Each frame is let go as soon as it is used: the narrow rows keep only what decide reads,
    # and none of them is held through the wide pass.
    with steps("count"):
        input_counts = assemble.input_counts(events, window)
    events = events.select(assemble.DECIDE_COLUMNS)
    with steps("decide"):
        decisions = assemble.decide(events, result, window)
        del result, events
    with steps("count"):
        summary = DaySummary(
            fates=assemble.fate_counts(decisions),
            reject_reasons=assemble.reject_reasons(decisions),
            link_counts=assemble.link_counts(decisions),
            input_counts=input_counts,
        )
    # The rows that leave the job, in one streaming pass over the wide columns they need, a
    # few whole files at a time.
    proxies = assemble.proxy_sockets(raw, decisions)
    tags = assemble.output_tags(decisions)
    evidence = decisions.evidence
    del decisions
    chunks = assemble.wide_rows(raw, tags, parts)
    del tags
    frames = DayFrames(
        tuple(
            OutputFrames(
                curated=assemble.curated_rows(wide, proxies, window),
                rejects=assemble.rejected_rows(wide, list(files), window),
                misaligned=assemble.misaligned(wide),
            )
            for wide in chunks
        ),
        evidence,
    )
    return frames, summary
