"""What a scheduler operator asks: which days are published, how they looked, and whether their
input changed since (so a rebuild would publish something different)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from proxylink.jobs.config import Config
from proxylink.jobs.errors import InputError
from proxylink.jobs.nightly.discover import recorded_proxies
from proxylink.jobs.nightly.manifest import day_manifests, last_published
from proxylink.jobs.nightly.plan import plan_files
from proxylink.jobs.nightly.run import fingerprint
from proxylink.transforms.params import DayWindow


@dataclass(frozen=True)
class DayStatus:
    day: date
    last_run: str  # status of the newest run: published, skipped, validation_failed, or none
    published_at: str | None
    rows: int | None
    link_rate: float | None
    validation: str | None
    fingerprint: str | None
    input_changed: str  # yes, no, or unknown (events not reachable)


def known_days(curated_root: Path) -> list[date]:
    folder = curated_root / "_manifests"
    if not folder.is_dir():
        return []
    return sorted(date.fromisoformat(p.name[5:]) for p in folder.glob("date=*") if p.is_dir())


def day_status(config: Config, day: date) -> DayStatus:
    curated_root = config.curated_root()
    runs = day_manifests(curated_root, day)
    pub = last_published(curated_root, day)
    changed = "unknown"
    events = config.events
    if pub is not None and events is not None and config.proxies:  # else: unknown
        discovery = None
        if config.proxies_auto:  # compare with the set the run discovered (see `fingerprint`)
            discovery = config.discovery.basis()
            config = config.with_proxies(recorded_proxies(pub))
        params = config.link_params()
        try:
            window = DayWindow.for_day(day, params)
            planned = plan_files(events, window, params, config.input.on_invalid_partition)
            now_print = fingerprint(planned, params, discovery)
            changed = "no" if now_print == pub.get("fingerprint") else "yes"
        except InputError:
            changed = "yes (input gone)"
    validation = None
    if pub is not None:
        v = pub.get("validation", {})
        validation = "passed" + (f", {len(v['warnings'])} warning(s)" if v.get("warnings") else "")
    return DayStatus(
        day=day,
        last_run=runs[-1]["status"] if runs else "none",
        published_at=pub.get("finished_at") if pub else None,
        rows=pub["counts"].get("curated") if pub else None,
        link_rate=pub["link_stats"].get("link_rate_devices_with_evidence") if pub else None,
        validation=validation,
        fingerprint=pub.get("fingerprint") if pub else None,
        input_changed=changed if pub else "-",
    )
