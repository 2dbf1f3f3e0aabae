"""Proxy discovery for day D: plan the day's files, scan the few columns discovery needs, judge.

`discover-proxies` prints what this finds; `proxies: auto` makes a run use it before linking.
The rules themselves are pure and live in `transforms/discover.py`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from proxylink.jobs.config import Config
from proxylink.jobs.engines.runner import Runner, runner_for
from proxylink.jobs.errors import ConfigError, InputError
from proxylink.jobs.nightly.plan import plan_files
from proxylink.transforms import discover as d
from proxylink.transforms.params import DayWindow, LinkParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Discovery:
    """The qualifying IP:ports of one day, the near misses, and what was read to find them."""

    day: date
    candidates: pl.DataFrame  # transforms.discover.CANDIDATE_COLUMNS
    day_devices: int
    files: int
    seconds: float
    settings: dict[str, Any]  # the `discovery:` settings used

    @property
    def found(self) -> pl.DataFrame:
        return self.candidates.filter(pl.col("qualifies"))

    @property
    def near_misses(self) -> pl.DataFrame:
        return self.candidates.filter(~pl.col("qualifies"))

    @property
    def proxies(self) -> tuple[str, ...]:
        """The qualifying IP:ports, sorted, in the form `proxies:` takes."""
        return tuple(sorted(self.found["proxy"].to_list()))

    def evidence(self, frame: pl.DataFrame) -> list[dict[str, Any]]:
        """Rows as plain JSON-ready dicts (the manifest and `--format json`)."""
        keep = [c for c in d.CANDIDATE_COLUMNS if c not in ("ip", "qualifies", "day_devices")]
        rows = frame.select(keep).to_dicts()
        for row in rows:
            for key in ("device_share", "connect_share"):
                if row[key] is not None:
                    row[key] = round(row[key], 4)
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "day_devices": self.day_devices,
            "files": self.files,
            "seconds": round(self.seconds, 3),
            "settings": self.settings,
            "proxies": self.evidence(self.found),
            "near_misses": self.evidence(self.near_misses),
        }


def discover_day(config: Config, day: date, runner: Runner | None = None) -> Discovery:
    """Judge every IP:port of day D by the `discovery:` rules; raise InputError without input.

    The counts are day-wide, over every device: the configured engine's runner computes them
    (the Spark runner across its tasks), the judging is the same small step either way."""
    if config.events is None:
        raise ConfigError("no events path: set `events:` in the config or pass --events")
    t0 = time.perf_counter()
    # Planning needs only the day's context window; the proxies are what we are looking for.
    params = LinkParams(
        proxies=(),
        tolerance_ms=round(config.link.tolerance_seconds * 1000),
        clock_skew_ms=round(config.input.clock_skew_seconds * 1000),
    )
    window = DayWindow.for_day(day, params)
    planned = plan_files(config.events, window, params, config.input.on_invalid_partition)
    runner = runner or runner_for(config)
    files, evidence = runner.socket_evidence(planned, window, config.input.on_corrupt_file)
    candidates = d.judge(evidence, config.discovery.rules(), config.discovery.near_misses)
    day_devices = int(candidates["day_devices"][0]) if candidates.height else 0
    found = Discovery(
        day=day,
        candidates=candidates,
        day_devices=day_devices,
        files=len(files),
        seconds=time.perf_counter() - t0,
        settings=config.discovery.model_dump(mode="json"),
    )
    log.info(
        "discovered %d proxies for %s in %.1fs: %s",
        len(found.proxies),
        day.isoformat(),
        found.seconds,
        ", ".join(found.proxies) or "none",
    )
    return found


def resolve_auto(
    config: Config, day: date, runner: Runner | None = None
) -> tuple[Config, Discovery]:
    """For `proxies: auto`: the config with day D's discovered proxies, and the evidence.

    A day where nothing qualifies is an input problem (exit 3): publishing a table in which
    nothing is proxied would look like a day without proxy traffic.
    """
    found = discover_day(config, day, runner)
    if not found.proxies:
        best = found.near_misses.head(1)
        hint = ""
        if best.height:
            row = best.row(0, named=True)
            hint = f"; closest: {row['proxy']} failed {', '.join(row['failed_rules'])}"
        raise InputError(
            f"proxies: auto found no proxy in the day's data{hint}; see `proxylink "
            f"discover-proxies --date {day.isoformat()}`, then tune `discovery:` or pin `proxies:`"
        )
    return config.with_proxies(found.proxies), found


def recorded_proxies(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The proxies a published run used, as its manifest records them."""
    used = manifest.get("proxies", {}).get("used")
    if used is None:
        used = manifest.get("config", {}).get("proxies", [])
    return tuple(used)


def as_yaml(found: Discovery) -> str:
    """A `proxies:` list to paste into a config, with the evidence as comments."""
    lines = [
        f"# proxies discovered on {found.day.isoformat()} by `proxylink discover-proxies` "
        f"({found.day_devices:,} devices that day)",
        "proxies:" if found.proxies else "proxies: []  # none qualified",
    ]
    for row in found.found.sort("proxy").iter_rows(named=True):
        lines.append(f"  - {row['proxy']}  # {_brief(row)}")
    if found.near_misses.height:
        lines.append("# near misses (rejected):")
        for row in found.near_misses.iter_rows(named=True):
            lines.append(
                f"#   {row['proxy']}: {_brief(row)}; failed {', '.join(row['failed_rules'])}"
            )
    return "\n".join(lines)


def _brief(row: dict[str, Any]) -> str:
    share = row["connect_share"]
    connect = f"CONNECT {share * 100:.1f}%" if share is not None else "no HTTP inspection"
    return (
        f"{row['devices']:,} devices ({row['device_share'] * 100:.1f}%), "
        f"{row['connections']:,} connections, {row['domains']:,} domains, {connect}"
    )


def as_text(found: Discovery) -> str:
    """The human report: each proposed proxy with its evidence, then the near misses."""
    lines = [
        f"proxies discovered on {found.day.isoformat()}: {len(found.proxies)} "
        f"({found.day_devices:,} devices that day, {found.files} files, {found.seconds:.1f}s)"
    ]
    header = (
        f"  {'IP:port':<24} {'devices':>8} {'share':>6} {'connections':>12} {'domains':>8} "
        f"{'HTTP recs':>10} {'CONNECT':>8}"
    )

    def table(frame: pl.DataFrame, rejected: bool) -> None:
        for row in frame.iter_rows(named=True):
            share = row["connect_share"]
            lines.append(
                f"  {row['proxy']:<24} {row['devices']:>8,} {row['device_share'] * 100:>5.1f}% "
                f"{row['connections']:>12,} {row['domains']:>8,} {row['http_records']:>10,} "
                + (f"{share * 100:>7.1f}%" if share is not None else f"{'-':>8}")
            )
            if row["example_domains"]:
                lines.append(f"      e.g. {', '.join(row['example_domains'])}")
            label = "rejected" if rejected else "why"
            lines.append(f"      {label}: {row['why']}")

    if found.proxies:
        lines.append(header)
        table(found.found, rejected=False)
    else:
        lines.append("  none qualified")
    if found.near_misses.height:
        lines.append("near misses (rejected; thresholds under `discovery:` in the config):")
        lines.append(header)
        table(found.near_misses, rejected=True)
    return "\n".join(lines)
