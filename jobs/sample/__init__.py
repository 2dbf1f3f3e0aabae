"""Generate a sample Defender ``DeviceNetworkEvents`` lake together with its ground truth.

Link precision and recall can only be measured on data whose answer is known, and the job's speed
only on data of realistic size and shape. This module produces both at once: an hourly partitioned
lake that carries the quirks of real exports (missing legs, PID reuse, ReportId resets, exact
duplicates, bad rows, and the `Shapes`: plain HTTP through the proxy, keep-alive sockets, port-less
and target-IP network-protection rows, throttled evidence, port pools, sensor clock skew, late
evidence, IPv4-mapped sockets, URL forms, schema drift between files, Log Analytics re-exports)
and truth tables that name every connection, its shapes and the one row that must represent it in
the curated table.

The stages are modules: `spec` (what to generate, every rate), `world` (devices, processes,
destinations), `events` (connections and the rows Defender writes for them) and `writing` (the
truth and the hour files). Everything is vectorised over all connections and events. Strings
live in small lookup tables and events carry integer codes until one hour file at a time is
materialised, which keeps memory low.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxylink.jobs.sample.codes import LAKE_FORMAT
from proxylink.jobs.sample.events import (
    assign_report_ids,
    build_connections,
    build_events,
    string_port_hours,
)
from proxylink.jobs.sample.spec import Rates, SampleSpec, Shapes
from proxylink.jobs.sample.world import build_world
from proxylink.jobs.sample.writing import write_lake, write_truth_connections

__all__ = ["LAKE_FORMAT", "Rates", "SampleSpec", "SampleSummary", "Shapes", "write_sample"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSummary:
    """What was written: rows in the lake (duplicates included), connections, hour files."""

    events: int
    connections: int
    files: int
    root: Path
    truth: Path


def write_sample(
    out: Path, spec: SampleSpec, progress: Callable[[str], None] | None = None
) -> SampleSummary:
    """Write the lake under ``out/DeviceNetworkEvents`` and the truth under ``out/truth``.

    Both subfolders are replaced, so stale hour files of an earlier run never leak into a new one.
    """
    _check(spec)

    def say(message: str) -> None:
        log.info(message)
        if progress is not None:
            progress(message)

    rng = np.random.default_rng(spec.seed)
    root = out / "DeviceNetworkEvents"
    truth = out / "truth"
    for folder in (root, truth):
        if folder.exists():
            shutil.rmtree(folder)
    truth.mkdir(parents=True)

    world = build_world(rng, spec)
    say(f"world: {world.n_dev} devices, {len(world.proc_pid)} processes")
    conns = build_connections(rng, spec, world)
    n_conn = len(conns["dev"])
    say(f"connections: {n_conn}")
    string_hours = string_port_hours(rng, world, spec.days, spec.shapes.schema_drift)
    events, blocks = build_events(rng, world, conns, string_hours, spec.shapes, spec.rates)
    say(f"events: {len(events.ts)} distinct")
    assign_report_ids(rng, events, world, spec.days)
    write_truth_connections(truth / "connections.parquet", world, conns, events, blocks)
    rows, files = write_lake(
        rng,
        root,
        truth / "events.parquet",
        world,
        events,
        string_hours,
        spec.shapes,
        spec.rates,
        say,
    )
    say(f"wrote {rows} rows in {files} hour files")
    return SampleSummary(events=rows, connections=n_conn, files=files, root=root, truth=truth)


def _check(spec: SampleSpec) -> None:
    """Reject specs the generator cannot honour, before anything is written."""
    if spec.devices < 1 or spec.days < 1 or spec.connections_per_device < 0:
        raise ValueError("devices and days must be >= 1, connections_per_device >= 0")
    if not spec.proxies:
        raise ValueError("at least one proxy is needed")
    if spec.devices >= 1 << 20:
        raise ValueError("at most 2**20 devices")
