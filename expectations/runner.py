"""Run the suites with great-expectations and render its Data Docs.

The runner takes the profiles (small polars frames) and returns plain results, so jobs never
touch great-expectations objects. An internal error of great-expectations becomes a failed
validation with its message, never a traceback: nothing is published on it.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from proxylink.expectations.suites import CHECKS, Severity, SuiteSettings, severity_of

log = logging.getLogger(__name__)
SITE = "proxylink"


@dataclass(frozen=True)
class CheckResult:
    id: str
    suite: str
    severity: Severity
    success: bool
    description: str
    observed: Any = None
    unexpected: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "suite": self.suite,
            "severity": self.severity,
            "success": self.success,
            "description": self.description,
            "observed": _plain(self.observed),
            "unexpected": [_plain(v) for v in self.unexpected[:10]],
        }


@dataclass
class ValidationReport:
    results: list[CheckResult]
    pages: list[Path]
    duration_s: float
    error: str | None = None
    # When validation could not run: the whole traceback, so the manifest alone explains it.
    traceback: str | None = None

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "critical"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "warning"]

    @property
    def passed(self) -> bool:
        return self.error is None and not self.critical_failures

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "error": self.error,
            "traceback": self.traceback,
            "duration_s": round(self.duration_s, 3),
            "critical_failures": [r.id for r in self.critical_failures],
            "warnings": [r.id for r in self.warnings],
            "results": [r.to_json() for r in self.results],
            "report_pages": [str(p) for p in self.pages],
        }


def _import_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # great-expectations imports pyspark.sql.connect, which takes a `__main__` without `__spec__`
    # or `__file__` (`python -c`, pytest-xdist workers, embedded interpreters) for a doctest run
    # and calls sys.exit(0) when grpc is missing: the job would stop mid-run with exit 0. The
    # main module is given a name for the length of the import.
    main = sys.modules.get("__main__")
    borrowed = (
        main is not None
        and getattr(main, "__spec__", None) is None
        and not hasattr(main, "__file__")
    )
    if borrowed:
        main.__file__ = "<proxylink>"  # type: ignore[union-attr]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import great_expectations
            import great_expectations.expectations  # noqa: F401
    finally:
        if borrowed:
            del main.__file__  # type: ignore[union-attr]


def preload() -> threading.Thread:
    """Import great-expectations in the background (about 3 CPU-seconds) while the run links.

    The import runs at the lowest scheduling priority (Linux sets it per thread): it takes the
    cores the link core leaves idle instead of competing with its threads for them. Measured on
    the 2-core bench machine, at normal priority it slowed the classify step it overlapped by
    about as much as it hid. A validation that needs it before it is done waits for it at the
    import lock, when the job's own threads are idle; only on a machine whose cores other
    processes keep busy would the import then wait its turn behind them."""
    thread = threading.Thread(target=_import_gx_idle, name="gx-preload", daemon=True)
    thread.start()
    return thread


def _import_gx_idle() -> None:
    if sys.platform == "linux":  # elsewhere the priority is the whole process's
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    _import_gx()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _to_pandas(frame: pl.DataFrame) -> Any:
    """numpy-backed pandas: great-expectations' type handling trips over Arrow dtypes."""
    return frame.to_pandas(use_pyarrow_extension_array=False)


def validate(
    profiles: dict[str, pl.DataFrame],
    settings: SuiteSettings,
    docs: Path,
    run_name: str,
    run_time: datetime,
) -> ValidationReport:
    """Validate each suite's profile; render one Data Docs page per suite for this run.

    great-expectations parses run names as dates wherever it is not handed a time (the run key)
    and again when it titles a Data Docs page. A run id whose random suffix starts with four
    digits (`20261203T121529Z-4422ad`) then reads as a UTC offset of +44:22, and the validation
    fails. So it is handed `run_time` (UTC) and a name no date parser reads (`gx_run_name`).
    """
    t0 = time.perf_counter()
    try:
        results = _run(profiles, settings, docs, run_name, run_time)
    except Exception as exc:  # great-expectations raises many types; none may escape as a crash
        first = str(exc).splitlines()[0] if str(exc) else ""
        log.debug("great-expectations failed", exc_info=True)
        failed = ValidationReport(
            [],
            [],
            time.perf_counter() - t0,
            f"{type(exc).__name__}: {first}",
            traceback=traceback.format_exc(),
        )
        with contextlib.suppress(OSError):
            failed.pages = [write_summary(failed, docs, run_name)]
        return failed
    suite_pages = sorted((docs / "validations").glob(f"*/{gx_run_name(run_name)}/**/*.html"))
    report = ValidationReport(results, suite_pages, time.perf_counter() - t0)
    report.pages = [write_summary(report, docs, run_name), *suite_pages]
    return report


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("run_time must be timezone-aware")
    return when.astimezone(UTC)


def gx_run_name(run_name: str) -> str:
    """The name great-expectations files a run under (its Data Docs folder): ours, prefixed so
    that no date parser takes it for a time."""
    return f"run-{run_name}"


def run_identifier(run_name: str, run_time: datetime) -> Any:
    """great-expectations' key of one run, with the time given rather than parsed."""
    from great_expectations.core.run_identifier import RunIdentifier

    return RunIdentifier(run_name=gx_run_name(run_name), run_time=_utc(run_time))


def write_summary(report: ValidationReport, docs: Path, run_name: str) -> Path:
    """One page per run: every expectation's outcome, linking to great-expectations' pages."""
    page = docs / "runs" / f"{run_name}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    verdict = "passed" if report.passed else "FAILED: nothing was published"
    rows = []
    for r in report.results:
        state = "ok" if r.success else ("FAILED" if r.severity == "critical" else "warning")
        examples = ", ".join(html.escape(repr(v)) for v in r.unexpected[:5])
        rows.append(
            f"<tr class='{state.lower()}'><td>{r.suite}</td><td>{r.id}</td>"
            f"<td>{html.escape(r.description)}</td><td>{r.severity}</td><td>{state}</td>"
            f"<td>{html.escape(str(r.observed))}</td><td>{examples}</td></tr>"
        )
    links = "".join(
        f"<li><a href='{os.path.relpath(p, page.parent)}'>{p.parent.parent.parent.name}</a></li>"
        for p in report.pages
    )
    page.write_text(
        f"""<!doctype html><html><head><meta charset="utf-8">
<title>proxylink validation {run_name}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 8px;text-align:left}}
tr.failed{{background:#f8d0d0}}tr.warning{{background:#fff1c2}}</style></head><body>
<h1>Validation of run {run_name}: {verdict}</h1>
{f"<p>Error: {html.escape(report.error)}</p>" if report.error else ""}
<table><tr><th>suite</th><th>id</th><th>expectation</th><th>severity</th><th>outcome</th>
<th>observed</th><th>unexpected</th></tr>{"".join(rows)}</table>
<h2>great-expectations Data Docs</h2><ul>{links}</ul></body></html>
""",
        encoding="utf-8",
    )
    return page


def _run(
    profiles: dict[str, pl.DataFrame],
    settings: SuiteSettings,
    docs: Path,
    run_name: str,
    run_time: datetime,
) -> list[CheckResult]:
    _import_gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # The ephemeral context makes a default docs site in a temporary folder; ours replaces it.
    for name, site in dict(context.variables.data_docs_sites or {}).items():
        folder = site.get("store_backend", {}).get("base_directory")
        context.delete_data_docs_site(name)
        if folder and Path(folder).parent == Path(tempfile.gettempdir()):
            shutil.rmtree(folder, ignore_errors=True)
    context.add_data_docs_site(
        site_name=SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs.resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_pandas("proxylink")
    out: list[CheckResult] = []
    for suite_name, frame in profiles.items():
        checks = {c.id: c for c in CHECKS[suite_name]}
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
        for check in checks.values():
            expectation = check.build(gxe, settings)
            expectation.meta = {"id": check.id, "severity": severity_of(check, settings)}
            expectation.description = check.description
            suite.add_expectation(expectation)
        batch = source.add_dataframe_asset(f"{suite_name}_profile")
        definition = batch.add_batch_definition_whole_dataframe("run")
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=definition, suite=suite)
        )
        result = validation.run(
            batch_parameters={"dataframe": _to_pandas(frame)},
            run_id=run_identifier(run_name, run_time),
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10},
        )
        for r in result.results:
            config = r.expectation_config
            if config is None or config.meta is None:
                raise RuntimeError("a validation result lost its expectation")
            check = checks[config.meta["id"]]
            res = r.result or {}
            out.append(
                CheckResult(
                    id=check.id,
                    suite=suite_name,
                    severity=severity_of(check, settings),
                    success=bool(r.success),
                    description=check.description,
                    observed=res.get("observed_value", res.get("unexpected_count")),
                    unexpected=list(res.get("partial_unexpected_list") or []),
                )
            )
    # One Data Docs build for the run's suites (the context is ephemeral: its stores hold only
    # this run's results); a build per suite would render the site's index four times.
    context.build_data_docs(site_names=[SITE])
    return out
