"""Link quality scored against the sample generator's ground truth (200 devices, one day).

The lake carries every shape the generator models (`jobs.sample.Shapes`, all on by default),
and each is scored on its own: precision and recall of the legs it touches, next to a per-leg
nearest-in-time join on the same legs. The figures are printed (`pytest -s tests/test_truth.py`).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from proxylink.jobs.config import load_config
from proxylink.jobs.nightly.run import RunReport, run_day
from proxylink.jobs.sample import SampleSpec, write_sample
from proxylink.transforms import schema as s

DAY = date(2026, 11, 1)
TOLERANCE = timedelta(seconds=5)
KEY = [s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID]
EVIDENCE = pl.col("np_present") | pl.col("http_present") | pl.col("ssl_present")

# The legs each shape touches, by the truth's flags.
SHAPES: dict[str, pl.Expr] = {
    "overall": pl.lit(True),
    "burst": pl.col("burst_size") > 1,
    "port-less": pl.col("np_portless") | pl.col("np_target_portless"),
    "plain HTTP": pl.col("plain_http"),
    "keep-alive": pl.col("keepalive"),
    "target-IP": pl.col("np_shape2"),
    "mapped": pl.col("mapped"),
    "port pool": pl.col("port_pool"),
    "sensor skew": pl.col("sensor_skewed"),
    "throttled burst": pl.col("np_throttled").any().over("burst_id"),
}
# Recall this linker must keep on each shape of this lake (it never guesses: a leg whose
# evidence another open leg of its process could own stays unlinked, so shapes that leave
# legs without evidence next to port-less rows cost recall, never precision).
RECALL_FLOOR = {"overall": 0.985, "plain HTTP": 0.99, "port-less": 0.88, "target-IP": 0.93}


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ...]:
    root = tmp_path_factory.mktemp("truth")
    summary = write_sample(root / "lake", SampleSpec(devices=200, start=DAY, days=1, seed=11))
    config = load_config(
        Path("conf/local.yaml"),
        {"events": str(summary.root), "curated": str(root / "curated")},
    )
    report: RunReport = run_day(config, DAY)
    assert report.counts["rows_in_day"] > 10_000
    curated = pl.read_delta(str(root / "curated" / "connection_success"))
    truth = pl.read_parquet(summary.truth / "connections.parquet")
    return curated, truth, summary.root, report


def _day_truth(truth: pl.DataFrame) -> pl.DataFrame:
    return truth.filter(pl.col("rep_date") == DAY, pl.col("rep_role").is_not_null()).rename(
        {"rep_Timestamp": s.TIMESTAMP, "rep_ReportId": s.REPORT_ID}
    )


def test_no_connection_is_counted_twice_and_none_is_lost_but_by_never_guessing(
    scored: tuple,
) -> None:
    curated, truth, _, report = scored
    expected = _day_truth(truth).select(KEY)
    assert curated.select(KEY).is_duplicated().sum() == 0, "duplicate keys"
    extra = curated.select(KEY).join(expected, on=KEY, how="anti")
    assert extra.height == 0, f"{extra.height} rows that are not connections (double counting)"
    # A connection whose leg is missing and whose evidence two open legs could own is folded as
    # ambiguous evidence: never a second row, at worst not counted (counts are lower bounds).
    missing = _day_truth(truth).join(curated, on=KEY, how="anti")
    assert set(missing["rep_role"]) <= {"np"}
    assert missing.height <= report.counts["evidence_ambiguous"]
    assert curated[s.TIMESTAMP].dt.date().unique().to_list() == [DAY], "rows from another day"
    # Every re-exported event (other columns, Log Analytics) is a duplicate, not a clash.
    assert report.counts["duplicate"] > 0
    assert "duplicate_key" not in report.reject_reasons


def _nearest_baseline(lake: Path) -> pl.DataFrame:
    """The naive approach: every leg takes the evidence row nearest in time on its device."""
    events = _read_lake(lake)
    proxies = ["10.20.0.5", "10.20.0.6"]
    ip = pl.col(s.REMOTE_IP).str.replace("^::ffff:", "")
    fields = pl.col(s.ADDITIONAL_FIELDS)
    domain = (
        pl.when(pl.col(s.ACTION_TYPE) == "ConnectionSuccess")
        .then(pl.col(s.REMOTE_URL))
        .when(pl.col(s.ACTION_TYPE) == "HttpConnectionInspected")
        .then(fields.str.json_path_match("$.host"))
        .when(pl.col(s.ACTION_TYPE) == "SslConnectionInspected")
        .then(fields.str.json_path_match("$.server_name"))
        .str.to_lowercase()
        .str.replace(r"^[a-z]+://", "")
        .str.replace(r"[/:].*$", "")
    )
    events = events.with_columns(domain.replace("", None).alias("ev_domain"))
    legs = events.filter(
        pl.col(s.ACTION_TYPE) == "ConnectionSuccess",
        ip.is_in(proxies),
        pl.col("ev_domain").is_null(),
    ).select(KEY)
    evidence = events.filter(pl.col("ev_domain").is_not_null()).select(
        s.DEVICE_ID, pl.col(s.TIMESTAMP).alias("ev_ts"), "ev_domain"
    )
    # An equi-join on the device and a minimum per leg: polars' join_asof "nearest" with
    # `by` is unreliable (docs/architecture.md, Known pitfalls).
    pairs = legs.join(evidence, on=s.DEVICE_ID).with_columns(
        (pl.col("ev_ts") - pl.col(s.TIMESTAMP)).abs().alias("gap")
    )
    nearest = pairs.filter(pl.col("gap") <= TOLERANCE).sort("gap").unique(KEY, keep="first")
    return nearest.select(*KEY, pl.col("ev_domain").alias("baseline_domain"))


def _read_lake(lake: Path) -> pl.DataFrame:
    """The lake's columns the baseline reads, each file typed as the job types it."""
    from proxylink.jobs.nightly import lake as reader
    from proxylink.jobs.nightly.plan import plan_files
    from proxylink.transforms.params import DayWindow, LinkParams

    params = LinkParams(proxies=())
    files = plan_files(lake, DayWindow.for_day(DAY, params), params)
    columns = [s.DEVICE_ID, s.TIMESTAMP, s.REPORT_ID, s.ACTION_TYPE, s.REMOTE_IP, s.REMOTE_URL]
    scan = reader.scan_lake(files, "fail").frame.select(*columns, s.ADDITIONAL_FIELDS)
    return scan.collect().unique(KEY)


def _score(legs: pl.DataFrame, column: str) -> tuple[float, float, int]:
    """Precision and recall of `column` against the true domain, and the wrong domains."""
    named = legs.filter(pl.col(column).is_not_null())
    right = pl.col(column) == pl.col("domain")
    precision = named.filter(right).height / named.height if named.height else 1.0
    with_evidence = legs.filter(EVIDENCE)
    recall = with_evidence.filter(right.fill_null(False)).height / max(with_evidence.height, 1)
    return precision, recall, named.filter(~right).height


def test_every_shape_is_linked_without_a_wrong_domain_and_beats_nearest_in_time(
    scored: tuple,
) -> None:
    curated, truth, lake, _ = scored
    legs = _day_truth(truth).filter(pl.col("rep_role") == "leg")
    legs = legs.join(curated.select(*KEY, s.REMOTE_URL, s.LINK_METHOD), on=KEY)
    legs = legs.join(_nearest_baseline(lake), on=KEY, how="left")
    lines = [
        f"{'shape':<16}{'legs':>7}{'precision':>11}{'recall':>9}{'wrong':>7}   nearest-in-time"
    ]
    for shape, where in SHAPES.items():
        cases = legs.filter(where)
        assert cases.filter(EVIDENCE).height >= 100, f"too few {shape} legs in the sample"
        precision, recall, wrong = _score(cases, s.REMOTE_URL)
        naive_p, naive_r, naive_wrong = _score(cases, "baseline_domain")
        lines.append(
            f"{shape:<16}{cases.height:>7,}{precision:>11.5f}{recall:>9.5f}{wrong:>7}   "
            f"precision {naive_p:.5f}, recall {naive_r:.5f}, {naive_wrong} wrong"
        )
        assert precision >= 0.9995, shape
        assert recall >= RECALL_FLOOR.get(shape, 0.95), shape
        assert wrong * 10 <= max(naive_wrong, 1), shape
    print("\nlink quality per shape (200 devices, seed 11):\n" + "\n".join(lines))
