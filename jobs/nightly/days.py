"""Running many days: the nightly run with its lookback, and backfills.

Each day is built on its own; a day that fails (missing input, failed validation) is recorded
and the next day still runs. A held lock stops everything: another writer is at work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from proxylink.jobs.config import Config
from proxylink.jobs.errors import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_VALIDATION,
    InputError,
    LockHeld,
    ProxylinkError,
    ValidationFailed,
)
from proxylink.jobs.nightly.run import RunReport, run_day

log = logging.getLogger(__name__)

PUBLISHED = "published"
SKIPPED = "skipped"
FAILED_VALIDATION = "failed validation"
FAILED_INPUT = "failed input"
FAILED = "failed"


@dataclass(frozen=True)
class DayOutcome:
    day: date
    outcome: str
    exit_code: int
    seconds: float
    message: str = ""
    report: RunReport | None = None


def yesterday(now: datetime) -> date:
    """The day a nightly run builds: yesterday in UTC."""
    return now.date() - timedelta(days=1)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def build_days(
    config: Config,
    days: list[date],
    *,
    force: bool = False,
    on_day: Callable[[int, DayOutcome], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[DayOutcome]:
    """Build each day in order; LockHeld aborts, other failures are recorded per day."""
    import time

    outcomes: list[DayOutcome] = []
    for i, day in enumerate(days):
        t0 = time.perf_counter()
        try:
            report = run_day(config, day, force=force, progress=progress)
            outcome = SKIPPED if report.status == "skipped" else PUBLISHED
            result = DayOutcome(day, outcome, EXIT_OK, time.perf_counter() - t0, "", report)
        except LockHeld:
            raise
        except ValidationFailed as exc:
            result = DayOutcome(
                day, FAILED_VALIDATION, EXIT_VALIDATION, time.perf_counter() - t0, str(exc)
            )
        except InputError as exc:
            result = DayOutcome(day, FAILED_INPUT, EXIT_INPUT, time.perf_counter() - t0, str(exc))
        except ProxylinkError as exc:
            result = DayOutcome(day, FAILED, exc.exit_code, time.perf_counter() - t0, str(exc))
        log.info("%s: %s", day.isoformat(), result.outcome)
        outcomes.append(result)
        if on_day is not None:
            on_day(i, result)
    return outcomes


def exit_code(outcomes: list[DayOutcome]) -> int:
    """0 when every day was published or skipped; otherwise the code of the first failure."""
    return next((o.exit_code for o in outcomes if o.exit_code != EXIT_OK), EXIT_OK)
