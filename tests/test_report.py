"""`proxylink report`: the daily page, opened in headless Chromium as an analyst would open it.

A small real lake (sample + run for three days) is reported on, and the page is checked in the
browser: it loads with no console error and no request, each chart is drawn with the expected
number of bars and points at a visible size, and the numbers it shows are the tables' numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl
import pytest

from proxylink.jobs.serving.report import write_report
from proxylink.jobs.serving.report_html import (
    DailyReport,
    DomainRow,
    TrendPoint,
    ValidationSummary,
    render,
    trend_chart,
)
from proxylink.transforms import schema as s
from tests.cdp import INSTALL_HINT, Browser, Page, find_chromium
from tests.helpers import frame, http_row, leg, np_row

BIN = Path(sys.executable).parent / "proxylink"
CONF = Path(__file__).parent.parent / "conf" / "local.yaml"
DAYS = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
D = DAYS[-1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three published days of a 60-device sample lake; returns the curated root."""
    root = tmp_path_factory.mktemp("report")
    done = cli("sample", "--out", str(root / "lake"), "--devices", "60", "--days", "3")
    assert done.returncode == 0, done.stderr
    curated = root / "curated"
    done = cli(
        "run",
        *("--conf", str(CONF), "--date", D.isoformat(), "--lookback", "2"),
        *("--events", str(root / "lake" / "DeviceNetworkEvents"), "--curated", str(curated)),
    )
    assert done.returncode == 0, done.stderr
    return curated


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.fail(
            f"the report tests need Chromium and none was found; install it: {INSTALL_HINT}"
        )
    chromium = Browser(executable)
    yield chromium
    chromium.close()


def opened(browser: Browser, path: Path) -> Page:
    page = browser.open(path.resolve().as_uri())
    assert page.evaluate("document.readyState") == "complete"
    return page


def assert_clean(page: Page, path: Path) -> None:
    """No console error, exception, CSP violation or failed load; nothing fetched but the page."""
    log = page.log
    assert log.problems() == []
    assert set(log.requests.values()) == {path.resolve().as_uri()}


# Everything the tests measure on the page, in one round trip.
MEASURE = """(() => {
  const box = el => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const bars = id => [...document.querySelectorAll(`#${id} rect.bar`)].map(b => ({
    label: b.dataset.label, value: Number(b.dataset.value), size: box(b)}));
  const card = m => document.querySelector(`.card[data-metric="${m}"]`);
  return {
    svgs: Object.fromEntries([...document.querySelectorAll('svg.chart')].map(e => [e.id, box(e)])),
    points: [...document.querySelectorAll('#trend-chart circle.trend-point')].map(c => ({
      date: c.dataset.date, rate: Number(c.dataset.rate), size: box(c)})),
    gaps: [...document.querySelectorAll('#trend-chart rect.trend-gap')].map(g => g.dataset.date),
    lines: document.querySelectorAll('#trend-chart polyline.trend-line').length,
    domains: bars('domains-chart'), status: bars('status-chart'),
    evidence: bars('evidence-chart'), methods: bars('method-chart'),
    blindCount: document.getElementById('blind-count')?.textContent ?? null,
    blindRows: [...document.querySelectorAll('#blind-table tbody tr')].map(
      tr => [...tr.cells].map(td => td.textContent)),
    cards: Object.fromEntries([...document.querySelectorAll('.card')].map(
      c => [c.dataset.metric,
            {raw: c.dataset.value, shown: c.querySelector('.value').textContent}])),
    validationHref: document.getElementById('validation-link')?.href ?? null,
    notes: [...document.querySelectorAll('.missing[role=note]')].map(p => p.textContent),
    unavailable: [...document.querySelectorAll('section .missing')].map(
      p => p.closest('section').id),
    scripts: document.scripts.length,
    images: document.images.length,
    title: document.title,
  };
})()"""


def day_rows(curated: Path, table: str) -> pl.DataFrame:
    return pl.scan_delta(str(curated / table)).filter(pl.col("date") == D).collect()


def test_report_renders_every_chart_with_the_tables_numbers(lake: Path, browser: Browser) -> None:
    done = cli("report", "--curated", str(lake), "--date", D.isoformat())
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path == lake / "_reports" / "daily" / f"{D.isoformat()}.html"

    page = opened(browser, path)
    m = page.evaluate(MEASURE)
    assert_clean(page, path)
    assert m["title"] == f"proxylink daily report {D.isoformat()}"
    assert m["scripts"] == 0 and m["images"] == 0
    for chart in ("trend-chart", "domains-chart", "status-chart", "evidence-chart", "method-chart"):
        width, height = m["svgs"][chart]
        assert width > 200 and height > 50, chart

    # 1. link rate: 30 days ending D; the three built days are points, the rest gaps, not zeros.
    coverage = pl.scan_delta(str(lake / "proxy_coverage")).collect()
    per_day = (
        coverage.group_by("date")
        .agg(rate=(pl.col("LinkedSocket") + pl.col("LinkedProcess")).sum() / pl.sum("ProxyLegs"))
        .sort("date")
    )
    assert [p["date"] for p in m["points"]] == [d.isoformat() for d in DAYS]
    assert [p["rate"] for p in m["points"]] == pytest.approx(per_day["rate"].to_list(), abs=1e-6)
    assert all(w > 0 and h > 0 for p in m["points"] for w, h in [p["size"]])
    assert len(m["gaps"]) == 27 and D.isoformat() not in m["gaps"]
    assert m["lines"] == 1

    # 2. top domains behind the proxy, in the table's order, longest bar first.
    domains = (
        day_rows(lake, "domain_daily")
        .filter(pl.col("ProxiedConnections") > 0)
        .sort(["ProxiedConnections", "Devices", "RemoteUrl"], descending=[True, True, False])
        .head(20)
    )
    assert [(b["label"], b["value"]) for b in m["domains"]] == list(
        zip(domains["RemoteUrl"], domains["ProxiedConnections"], strict=True)
    )
    widths = [b["size"][0] for b in m["domains"]]
    assert len(widths) == 20 and widths == sorted(widths, reverse=True) and widths[-1] > 0

    # 3. blind devices: the count and the list are proxy_coverage's.
    today = day_rows(lake, "proxy_coverage")
    blind = today.filter(pl.col("Status") == "blind").sort("ProxyLegs", descending=True)
    assert blind.height > 0
    assert m["blindCount"] == str(blind.height)
    assert m["cards"]["blind-devices"]["raw"] == str(blind.height)
    assert [r[0] for r in m["blindRows"]] == blind["DeviceName"].to_list()
    assert [int(r[2].replace(",", "")) for r in m["blindRows"]] == blind["ProxyLegs"].to_list()
    statuses = dict(today.group_by("Status").len().iter_rows())
    assert {b["label"]: b["value"] for b in m["status"]} == {
        "protected": statuses.get("protected", 0),
        "blind": statuses.get("blind", 0),
        "direct-only": statuses.get("direct-only", 0),
    }
    assert m["cards"]["devices"]["raw"] == str(today.height)

    # 4. evidence sources of linked legs and the link-method split: connection_success's.
    cs = day_rows(lake, "connection_success")
    linked = cs.filter(pl.col("LinkMethod").is_in(["socket", "process"]))
    sources = dict(linked.group_by("EvidenceSource").len().iter_rows())
    assert [b["value"] for b in m["evidence"]] == [
        sources.get(k, 0)
        for k in ("ConnectionSuccess", "HttpConnectionInspected", "SslConnectionInspected")
    ]
    assert m["evidence"][0]["value"] > 0 and m["evidence"][1]["value"] > 0
    methods = dict(cs.group_by("LinkMethod").len().iter_rows())
    assert {b["label"]: b["value"] for b in m["methods"]} == {
        k: methods.get(k, 0) for k in ("socket", "process", "unlinked", "evidence_only", "direct")
    }

    # The headline.
    assert m["cards"]["connections"]["raw"] == str(cs.height)
    assert m["cards"]["connections"]["shown"] == f"{cs.height:,}"
    assert m["cards"]["proxied-share"]["raw"] == str(cs["IsProxied"].sum())
    assert float(m["cards"]["link-rate"]["raw"]) == pytest.approx(per_day["rate"][-1], abs=1e-6)
    assert m["cards"]["validation"]["raw"] == "passed"
    assert m["notes"] == [] and m["unavailable"] == []

    # The link to the run's validation page resolves to the manifest's page.
    manifest = max(
        (json.loads(p.read_text()) for p in (lake / "_manifests" / f"date={D}").glob("*.json")),
        key=lambda x: x["finished_at"],
    )
    target = Path(unquote(urlparse(m["validationHref"]).path))
    assert target.resolve() == Path(manifest["validation"]["report_pages"][0]).resolve()
    page.close()


def test_a_day_without_a_published_run_is_one_line_and_exit_3(lake: Path) -> None:
    done = cli("report", "--curated", str(lake), "--date", "2026-11-09")
    assert done.returncode == 3
    assert done.stderr.strip() == f"proxylink: error: no published run for 2026-11-09 under {lake}"
    assert not (lake / "_reports" / "daily" / "2026-11-09.html").exists()
    # Without --date it reports yesterday (UTC), as `run` builds it: what schedules rely on.
    done = cli("report", "--curated", str(lake))
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert done.returncode == 3 and f"no published run for {yesterday} " in done.stderr


def test_a_day_published_before_the_summary_tables_renders_what_exists(
    lake: Path, browser: Browser, tmp_path: Path
) -> None:
    """An older lake: the manifest names no summary table and neither table exists."""
    old = tmp_path / "curated"
    shutil.copytree(lake, old, ignore=shutil.ignore_patterns("domain_daily", "proxy_coverage"))
    for path in (old / "_manifests" / f"date={D}").glob("*.json"):
        manifest = json.loads(path.read_text())
        for table in ("domain_daily", "proxy_coverage"):
            manifest["tables"].pop(table, None)
        path.write_text(json.dumps(manifest))

    out = write_report(old, D, days=7, out=tmp_path / "old.html")
    page = opened(browser, out)
    m = page.evaluate(MEASURE)
    assert_clean(page, out)
    assert len(m["notes"]) == 3
    assert "before the proxy_coverage table existed" in m["notes"][0]
    assert "before the domain_daily table existed" in m["notes"][1]
    assert "proxy_coverage has no data in the 7 days" in m["notes"][2]
    assert m["unavailable"] == ["domains", "devices"]
    assert m["points"] == [] and len(m["gaps"]) == 7
    assert "domains-chart" not in m["svgs"] and m["blindCount"] is None
    cs = day_rows(lake, "connection_success")
    assert m["cards"]["connections"]["raw"] == str(cs.height)
    assert m["cards"]["devices"]["raw"] == str(cs["DeviceId"].n_unique())
    assert m["cards"]["blind-devices"]["shown"] == "n/a"
    assert len(m["evidence"]) == 3 and len(m["methods"]) == 5
    page.close()


HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '"><svg onload="window.__pwned = 3">',
    "</title></text></svg><script>window.__pwned = 4</script>",
]


def test_hostile_names_are_shown_as_text_and_never_run(
    build: Callable[..., Any], browser: Browser, tmp_path: Path
) -> None:
    """Device names come from the endpoints: a blind device named like markup, end to end."""
    rows = [
        leg(0, port=50000 + i, **{s.DEVICE_ID: f"{i:040d}", s.DEVICE_NAME: name})
        for i, name in enumerate(HOSTILE)
    ]
    rows += [
        leg(10, port=51000),
        np_row(200, "ok.example.com", port=51000),
        http_row(300, "ok.example.com", port=51000),
    ]
    build(frame(rows))
    out = write_report(tmp_path / "curated", date(2026, 11, 1), days=3)
    html = out.read_text()
    for name in HOSTILE:
        assert name not in html
    page = opened(browser, out)
    m = page.evaluate(MEASURE)
    assert page.evaluate("window.__pwned === undefined")
    assert m["scripts"] == 0 and m["images"] == 0
    assert sorted(r[0] for r in m["blindRows"]) == sorted(HOSTILE)
    assert_clean(page, out)
    page.close()


def test_hostile_domain_labels_stay_text_in_the_svg(browser: Browser, tmp_path: Path) -> None:
    """Domains pass a host-name check before publishing; the page does not rely on it."""
    day = date(2026, 11, 1)
    report = DailyReport(
        day=day,
        run_id="<b>run</b>",
        published_at="now",
        connections=3,
        proxied=2,
        link_methods={"socket": 2, "direct": 1},
        evidence_sources={"ConnectionSuccess": 2},
        devices=1,
        devices_from_coverage=True,
        validation=ValidationSummary("passed", ("<i>w</i>",), href='x" onmouseover="alert(1)'),
        trend=(TrendPoint(day, 2, 2),),
        status_counts={"protected": 1},
        blind_devices=(),
        blind_total=0,
        top_domains=tuple(DomainRow(name, 2 - i, 2, 1) for i, name in enumerate(HOSTILE[:2])),
    )
    out = tmp_path / "hostile.html"
    out.write_text(render(report))
    page = opened(browser, out)
    m = page.evaluate(MEASURE)
    assert page.evaluate("window.__pwned === undefined")
    assert [b["label"] for b in m["domains"]] == HOSTILE[:2]
    labels = page.evaluate(
        "[...document.querySelectorAll('#domains-chart text.label')].map(t => t.textContent)"
    )
    assert labels == HOSTILE[:2]
    assert (
        page.evaluate("document.querySelectorAll('[onmouseover], [onerror], [onload]').length") == 0
    )
    assert_clean(page, out)
    page.close()


def test_trend_leaves_days_without_data_as_gaps_not_zeros() -> None:
    days = [date(2026, 11, d) for d in range(1, 6)]
    points = [
        TrendPoint(days[0], 9, 10),
        TrendPoint(days[1], None, None),  # no proxy_coverage rows
        TrendPoint(days[2], 0, 0),  # rows but no proxy legs: no rate either
        TrendPoint(days[3], 8, 10),
        TrendPoint(days[4], 10, 10),
    ]
    svg = trend_chart(points, days[4])
    assert svg.count("<circle") == 3
    assert svg.count('class="trend-gap"') == 2
    assert svg.count("<polyline") == 1  # day 1 stands alone; days 4-5 are joined
    assert 'data-rate="0.000000"' not in svg
    assert "no proxy legs" in svg and "no proxy_coverage rows" in svg
