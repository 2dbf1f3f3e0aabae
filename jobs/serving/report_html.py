"""The daily report as one self-contained HTML page, rendered from plain data.

No I/O and no table reading here (that is `jobs.serving.report`), so the page can be tested on
inline values. Charts are inline SVG drawn on the server: the page loads nothing, runs no script and
reads the same in any browser or mail client. Every value that comes from the data (domain and
device names are chosen by whoever controls a host or a machine) is escaped, and the page's
Content-Security-Policy forbids scripts and every fetch as a second line of defence.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

# The order in which categories are drawn, so two reports look alike.
LINK_METHOD_ORDER = ("socket", "process", "unlinked", "evidence_only", "direct")
EVIDENCE_ORDER = ("ConnectionSuccess", "HttpConnectionInspected", "SslConnectionInspected")
STATUS_ORDER = ("protected", "blind", "direct-only")
EVIDENCE_LABELS = {
    "ConnectionSuccess": "ConnectionSuccess (network protection)",
    "HttpConnectionInspected": "HttpConnectionInspected (CONNECT)",
    "SslConnectionInspected": "SslConnectionInspected (TLS SNI)",
}
MAX_LABEL = 42  # characters of a domain shown before the ellipsis (the tooltip has it all)


@dataclass(frozen=True)
class TrendPoint:
    """One day of the link-rate trend; `legs` None means the day has no proxy_coverage rows."""

    day: date
    linked: int | None
    legs: int | None

    @property
    def rate(self) -> float | None:
        return self.linked / self.legs if self.legs and self.linked is not None else None


@dataclass(frozen=True)
class DomainRow:
    domain: str
    proxied: int
    connections: int
    devices: int


@dataclass(frozen=True)
class BlindDevice:
    device_name: str | None
    device_id: str
    proxy_legs: int
    connections: int


@dataclass(frozen=True)
class ValidationSummary:
    """What the publishing run's manifest says about its validation."""

    status: str  # passed | failed | not recorded
    warnings: tuple[str, ...] = ()
    href: str | None = None  # the run's validation page, relative to the report


@dataclass(frozen=True)
class DailyReport:
    """Everything the page shows, as plain values."""

    day: date
    run_id: str
    published_at: str
    connections: int
    proxied: int
    link_methods: dict[str, int]  # curated rows per LinkMethod
    evidence_sources: dict[str, int]  # linked legs (socket, process) per EvidenceSource
    devices: int
    devices_from_coverage: bool  # False: counted from connection_success (no proxy_coverage)
    validation: ValidationSummary
    trend: tuple[TrendPoint, ...]
    status_counts: dict[str, int] | None = None  # None: no proxy_coverage for the day
    blind_devices: tuple[BlindDevice, ...] | None = None
    blind_total: int | None = None  # all blind devices, even past the listed ones
    top_domains: tuple[DomainRow, ...] | None = None  # None: no domain_daily for the day
    missing: tuple[str, ...] = field(default_factory=tuple)  # sentences for the reader
    generated_at: str = ""

    @property
    def legs(self) -> int:
        m = self.link_methods
        return m.get("socket", 0) + m.get("process", 0) + m.get("unlinked", 0)

    @property
    def linked(self) -> int:
        return self.link_methods.get("socket", 0) + self.link_methods.get("process", 0)

    @property
    def link_rate(self) -> float | None:
        return self.linked / self.legs if self.legs else None


def esc(value: object) -> str:
    """Text or attribute content, safe inside HTML and inline SVG."""
    return html.escape(str(value), quote=True)


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _label(text: str, limit: int = MAX_LABEL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- charts


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    note: str  # printed after the bar
    tooltip: str
    kind: str = ""  # extra CSS class (colour)


def bar_chart(chart_id: str, bars: Sequence[Bar], caption: str, label_width: int = 300) -> str:
    """Horizontal bars, one per row, labelled on the left and annotated on the right."""
    if not bars:
        return f'<p class="empty" id="{esc(chart_id)}-empty">Nothing to show: {esc(caption)}.</p>'
    row, top, bar_area, note_area = 24, 4, 360, 190
    width = label_width + bar_area + note_area
    height = top + row * len(bars) + 4
    biggest = max(b.value for b in bars) or 1
    parts = [
        f'<svg id="{esc(chart_id)}" class="chart bars" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(caption)}">'
    ]
    for i, b in enumerate(bars):
        y = top + i * row
        w = max(1.0, bar_area * b.value / biggest) if b.value else 0.0
        parts.append(
            f'<g class="row"><title>{esc(b.tooltip)}</title>'
            f'<text class="label" x="{label_width - 8}" y="{y + 16}" text-anchor="end">'
            f"{esc(_label(b.label))}</text>"
            f'<rect class="bar {esc(b.kind)}" x="{label_width}" y="{y + 3}" width="{w:.1f}" '
            f'height="{row - 6}" data-label="{esc(b.label)}" data-value="{b.value}"></rect>'
            f'<text class="note" x="{label_width + w + 6:.1f}" y="{y + 16}">{esc(b.note)}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def trend_chart(points: Sequence[TrendPoint], highlight: date) -> str:
    """Link rate per day; a day without data is a shaded gap, never a zero."""
    width, height = 820, 260
    left, right, top, bottom = 56, 20, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(points)
    slot = plot_w / max(n, 1)

    def x(i: int) -> float:
        return left + slot * (i + 0.5)

    def y(rate: float) -> float:
        return top + (1 - rate) * plot_h

    parts = [
        f'<svg id="trend-chart" class="chart trend" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="link rate per day, {n} days ending {highlight.isoformat()}">'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}">'
            f'</line><text class="axis" x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{int(tick * 100)}%</text>"
        )
    every = max(1, math.ceil(n / 10))
    for i, p in enumerate(points):
        if p.rate is None:
            why = "no proxy_coverage rows" if p.legs is None else "no proxy legs"
            parts.append(
                f'<rect class="trend-gap" x="{left + slot * i:.1f}" y="{top}" '
                f'width="{slot:.1f}" height="{plot_h}" data-date="{p.day.isoformat()}">'
                f"<title>{p.day.isoformat()}: no data ({why})</title></rect>"
            )
        if (n - 1 - i) % every == 0:  # label the report day and every k-th day before it
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{height - bottom + 18}" '
                f'text-anchor="middle">{p.day.strftime("%m-%d")}</text>'
            )
    # One polyline per run of consecutive days with data, so a gap stays a gap.
    run: list[str] = []
    for i, q in enumerate([*points, None]):
        if q is not None and q.rate is not None:
            run.append(f"{x(i):.1f},{y(q.rate):.1f}")
            continue
        if len(run) > 1:
            parts.append(f'<polyline class="trend-line" points="{" ".join(run)}"></polyline>')
        run = []
    for i, p in enumerate(points):
        if p.rate is None:
            continue
        current = " current" if p.day == highlight else ""
        parts.append(
            f'<circle class="trend-point{current}" cx="{x(i):.1f}" cy="{y(p.rate):.1f}" '
            f'r="{5 if current else 3.5}" data-date="{p.day.isoformat()}" '
            f'data-rate="{p.rate:.6f}"><title>{p.day.isoformat()}: {_pct(p.rate, 2)} '
            f"({p.linked:,} of {p.legs:,} legs linked)</title></circle>"
        )
        if current:
            parts.append(
                f'<text class="point-label" x="{x(i) - 8:.1f}" y="{y(p.rate) - 10:.1f}" '
                f'text-anchor="end">{_pct(p.rate)}</text>'
            )
    parts.append(
        f'<text class="axis" x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        "UTC day (shaded: no data)</text></svg>"
    )
    return "".join(parts)


# ---------------------------------------------------------------- page


def _card(metric: str, label: str, value: str, raw: object, note: str = "") -> str:
    return (
        f'<div class="card" data-metric="{esc(metric)}" data-value="{esc(raw)}">'
        f'<div class="label">{esc(label)}</div><div class="value">{esc(value)}</div>'
        + (f'<div class="sub">{esc(note)}</div>' if note else "")
        + "</div>"
    )


def _headline(r: DailyReport) -> str:
    blind = "n/a" if r.blind_total is None else f"{r.blind_total:,}"
    v = r.validation
    status = v.status + (f", {len(v.warnings)} warning(s)" if v.warnings else "")
    cards = [
        _card("connections", "Connections", f"{r.connections:,}", r.connections),
        _card(
            "proxied-share",
            "Proxied share",
            _pct(_share(r.proxied, r.connections)),
            r.proxied,
            f"{r.proxied:,} through a proxy",
        ),
        _card(
            "link-rate",
            "Link rate",
            _pct(r.link_rate),
            "" if r.link_rate is None else f"{r.link_rate:.6f}",
            f"{r.linked:,} of {r.legs:,} proxy legs",
        ),
        _card(
            "devices",
            "Devices",
            f"{r.devices:,}",
            r.devices,
            "" if r.devices_from_coverage else "with a connection (no proxy_coverage)",
        ),
        _card("blind-devices", "Blind devices", blind, "" if r.blind_total is None else blind),
        _card(
            "validation",
            "Validation",
            status,
            v.status,
            ", ".join(v.warnings) if v.warnings else "",
        ),
    ]
    return '<section id="headline" class="cards">' + "".join(cards) + "</section>"


def _validation_link(v: ValidationSummary) -> str:
    if v.href is None:
        return "<span>no validation page recorded</span>"
    return f'<a id="validation-link" href="{esc(v.href)}">validation report of this run</a>'


def _trend_section(r: DailyReport) -> str:
    rows = "".join(
        f"<tr><td>{p.day.isoformat()}</td><td class='num'>{_pct(p.rate, 2)}</td>"
        f"<td class='num'>{'' if p.linked is None else f'{p.linked:,}'}</td>"
        f"<td class='num'>{'' if p.legs is None else f'{p.legs:,}'}</td></tr>"
        for p in r.trend
    )
    with_data = sum(p.rate is not None for p in r.trend)
    return (
        '<section id="trend"><h2>Link rate, last '
        f"{len(r.trend)} days</h2><p class='hint'>Linked proxy legs ÷ all proxy legs per UTC day, "
        f"from proxy_coverage; {with_data} of {len(r.trend)} days have data.</p>"
        + trend_chart(r.trend, r.day)
        + "<details><summary>Values</summary><table class='data'><thead><tr><th>date</th>"
        "<th>link rate</th><th>linked</th><th>legs</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></details></section>"
    )


def _domains_section(r: DailyReport) -> str:
    head = "<section id='domains'><h2>Top domains behind the proxy</h2>"
    if r.top_domains is None:
        return (
            head
            + "<p class='missing'>Not available: no domain_daily data for this day.</p></section>"
        )
    bars = [
        Bar(
            label=d.domain,
            value=d.proxied,
            note=f"{d.proxied:,} proxied · {d.devices:,} device{'s' if d.devices != 1 else ''}",
            tooltip=f"{d.domain}: {d.proxied:,} proxied of {d.connections:,} connections, "
            f"{d.devices:,} devices",
        )
        for d in r.top_domains
    ]
    return (
        head + f"<p class='hint'>The {len(bars)} domains with the most proxied connections "
        "(domain_daily.ProxiedConnections), with the devices that reached them.</p>"
        + bar_chart("domains-chart", bars, "no proxied connection named a domain")
        + "</section>"
    )


def _share_bars(
    counts: dict[str, int], order: Sequence[str], of_what: str, kind: str, labels: dict[str, str]
) -> list[Bar]:
    """One bar per category (the known ones first, in order, even at zero), with its share."""
    total = sum(counts.values())
    bars = []
    for key in [*order, *sorted(k for k in counts if k not in order)]:
        n = counts.get(key, 0)
        bars.append(
            Bar(
                label=labels.get(key, key),
                value=n,
                note=f"{n:,} ({_pct(_share(n, total))})",
                tooltip=f"{key}: {n:,} of {total:,} {of_what}",
                kind=f"{kind}-{key}",
            )
        )
    return bars


def _devices_section(r: DailyReport) -> str:
    head = "<section id='devices'><h2>Network protection coverage</h2>"
    if r.status_counts is None or r.blind_devices is None:
        return (
            head
            + "<p class='missing'>Not available: no proxy_coverage data for this day.</p></section>"
        )
    bars = _share_bars(r.status_counts, STATUS_ORDER, "devices", "status", {})
    rows = "".join(
        f"<tr><td class='name'>{esc(d.device_name or '(no name)')}</td>"
        f"<td class='id'>{esc(d.device_id)}</td><td class='num'>{d.proxy_legs:,}</td>"
        f"<td class='num'>{d.connections:,}</td></tr>"
        for d in r.blind_devices
    )
    more = (r.blind_total or 0) - len(r.blind_devices)
    more_note = (
        f"<p class='hint'>{more:,} more blind devices are not listed; query proxy_coverage.</p>"
        if more > 0
        else ""
    )
    table = (
        "<p class='empty'>No blind device: every device with proxy legs produced evidence.</p>"
        if not r.blind_devices
        else "<table id='blind-table' class='data'><thead><tr><th>DeviceName</th>"
        "<th>DeviceId</th><th class='num'>ProxyLegs</th><th class='num'>Connections</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>{more_note}"
    )
    return (
        head + "<p class='hint'>protected: produced evidence; blind: proxy legs but no evidence "
        "(network protection probably off); direct-only: no proxy legs.</p>"
        + bar_chart("status-chart", bars, "no device", label_width=140)
        + f"<h3>Blind devices: <span id='blind-count'>{r.blind_total or 0:,}</span></h3>"
        "<p class='hint'>Turn network protection on here first, most proxy legs first.</p>"
        + table
        + "</section>"
    )


def _evidence_section(r: DailyReport) -> str:
    linked = sum(r.evidence_sources.values())
    sources = _share_bars(
        r.evidence_sources, EVIDENCE_ORDER, "linked legs", "evidence", EVIDENCE_LABELS
    )
    methods = _share_bars(r.link_methods, LINK_METHOD_ORDER, "connections", "method", {})
    return (
        "<section id='evidence'><h2>Evidence sources</h2>"
        f"<p class='hint'>The EvidenceSource of the {linked:,} linked proxy legs "
        "(LinkMethod socket or process) in connection_success.</p>"
        + bar_chart("evidence-chart", sources, "no linked leg")
        + "<h3>Link method</h3><p class='hint'>All curated connections of the day by "
        "LinkMethod.</p>"
        + bar_chart("method-chart", methods, "no connection", label_width=140)
        + "</section>"
    )


_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430;
  margin: 0 auto; padding: 16px 24px 40px; max-width: 1100px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 2px; } h2 { font-size: 17px; margin: 28px 0 4px; }
h3 { font-size: 15px; margin: 18px 0 4px; }
.meta, .hint { color: #5a6472; margin: 2px 0 8px; }
.missing { background: #fff4d6; border-left: 4px solid #e0a800; padding: 6px 10px; }
.empty { color: #5a6472; font-style: italic; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 10px;
  margin: 14px 0; }
.card { border: 1px solid #d9dee5; border-radius: 6px; padding: 10px 12px; }
.card .label { color: #5a6472; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; }
.card .sub { color: #5a6472; font-size: 12px; overflow-wrap: anywhere; }
svg.chart { display: block; max-width: 100%; height: auto; font-size: 12px; }
svg text { fill: #1d2430; } svg .axis { fill: #5a6472; }
svg .grid { stroke: #e3e7ec; stroke-width: 1; }
svg .bar { fill: #3b6fb6; } svg .bar.status-blind { fill: #c0392b; }
svg .bar.status-protected { fill: #2e8b57; } svg .bar.status-direct-only { fill: #8a94a3; }
svg .bar[class*='evidence-'] { fill: #6c4bb4; } svg .bar.method-unlinked { fill: #c0392b; }
svg .bar.method-direct { fill: #8a94a3; } svg .bar.method-evidence_only { fill: #d08a1d; }
svg .trend-line { fill: none; stroke: #3b6fb6; stroke-width: 2; }
svg .trend-point { fill: #3b6fb6; } svg .trend-point.current { fill: #1d2430; }
svg .trend-gap { fill: #eef0f3; } svg .point-label { font-weight: 600; }
table.data { border-collapse: collapse; margin: 6px 0; }
table.data th, table.data td { border-bottom: 1px solid #e3e7ec; padding: 3px 10px;
  text-align: left; }
table.data td.num, table.data th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.data td.id { font-family: ui-monospace, monospace; font-size: 12px; color: #5a6472; }
details { margin: 6px 0; } footer { margin-top: 32px; color: #5a6472; font-size: 12px; }
"""

# Nothing may load or run: no scripts, no fetches, styles only from this page.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)


def render(r: DailyReport) -> str:
    """The whole page as one string."""
    missing = "".join(f"<p class='missing' role='note'>{esc(m)}</p>" for m in r.missing)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>proxylink daily report {r.day.isoformat()}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>proxylink daily report: {r.day.isoformat()} (UTC)</h1>"
        f"<p class='meta'>run <code>{esc(r.run_id)}</code>, published {esc(r.published_at)} · "
        f"{_validation_link(r.validation)}</p></header>"
        f"{missing}{_headline(r)}{_trend_section(r)}{_domains_section(r)}"
        f"{_devices_section(r)}{_evidence_section(r)}"
        f"<footer>Generated {esc(r.generated_at)} by proxylink report from the Delta tables "
        "connection_success, proxy_coverage and domain_daily and the run manifest.</footer>"
        "</body></html>\n"
    )
