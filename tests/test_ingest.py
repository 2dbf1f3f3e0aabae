"""`proxylink ingest`: Defender Streaming API exports become the lake that `proxylink run` reads.

Most tests use the real vendor sample (31 records of ten advanced-hunting tables) laid out as the
storage-account export writes it; counts are checked against an independent reading of that file.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import polars as pl
import pytest

from proxylink.jobs.cli import main
from proxylink.jobs.nightly.lock import curated_lock

REPO = Path(__file__).resolve().parents[1]
SAMPLE_NAME = "reference/m365-defender-streaming-sample.ndjson"
DNE = "AdvancedHunting-DeviceNetworkEvents"
LAYOUT = "tenantId=12345af3-bc0e-4f36-b08e-27759e912345/y=2023/m=07/d=19/h=18/m=00"


def _sample_path() -> Path:
    """shared/ sits beside the repository (a worktree, or CI's fresh clone)."""
    for root in (REPO.parent / "shared", Path("/work/shared")):
        if (root / SAMPLE_NAME).is_file():
            return root / SAMPLE_NAME
    raise FileNotFoundError(f"shared/{SAMPLE_NAME} not found beside {REPO}")


SAMPLE_LINES = _sample_path().read_text(encoding="utf-8").splitlines()
SAMPLE = [json.loads(line) for line in SAMPLE_LINES]
SAMPLE_DNE = [r for r in SAMPLE if r["category"].lower() == DNE.lower()]


def _export(root: Path, lines: list[str], layout: str = LAYOUT) -> Path:
    """Write lines where the storage-account export puts one hour of one table."""
    path = root / "export" / layout / "PT1H.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _ingest(source: Path, lake: Path, *extra: str) -> int:
    return main(["ingest", "--from", str(source), "--out", str(lake), *extra])


def _lake_files(lake: Path) -> list[Path]:
    return sorted((lake / "DeviceNetworkEvents").rglob("*.parquet"))


def _lake_rows(lake: Path) -> pl.DataFrame:
    frames = [pl.read_parquet(p, hive_partitioning=False) for p in _lake_files(lake)]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _ledger(lake: Path) -> dict[str, Any]:
    (entry,) = (lake / "_ingest" / "ledger").glob("*.json")
    return dict(json.loads(entry.read_text()))


def _quarantine(lake: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted((lake / "_ingest" / "quarantine").glob("*.ndjson"))
        for line in path.read_text().splitlines()
    ]


def _identity(p: dict[str, Any]) -> tuple[Any, ...]:
    when = datetime.fromisoformat(p["Timestamp"]).astimezone(UTC)
    return (
        p["DeviceId"],
        p["ReportId"],
        p["ActionType"],
        p["RemoteIP"],
        f"{when:%Y-%m-%dT%H:%M:%S.%f}",
    )


def test_sample_every_network_event_lands_once_in_the_hour_of_its_timestamp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _export(tmp_path, SAMPLE_LINES)
    lake = tmp_path / "lake"
    assert _ingest(tmp_path / "export", lake) == 0
    out = capsys.readouterr().out
    assert f"ingested {source}: 31 records = 17 rows" in out

    rows = _lake_rows(lake)
    got = Counter(
        (r["DeviceId"], r["ReportId"], r["ActionType"], r["RemoteIP"], r["Timestamp"])
        for r in rows.with_columns(pl.col("Timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f"))
        .select("DeviceId", "ReportId", "ActionType", "RemoteIP", "Timestamp")
        .to_dicts()
    )
    assert got == Counter(_identity(r["properties"]) for r in SAMPLE_DNE)
    assert len(SAMPLE_DNE) == 17

    # each file sits in the partition of its rows' Timestamp, not of the receive `time` (h=18)
    for path in _lake_files(lake):
        stamps = pl.read_parquet(path)["Timestamp"]
        hours = {f"date={t:%Y-%m-%d}/hour={t:%H}" for t in stamps}
        assert hours == {f"{path.parent.parent.name}/{path.parent.name}"}
    hours = sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in _lake_files(lake))
    assert hours == [
        "date=2022-11-09/hour=17",
        "date=2023-07-19/hour=07",
        "date=2023-07-19/hour=12",
        "date=2023-07-19/hour=14",
    ]

    ledger = _ledger(lake)
    others = Counter(r["category"] for r in SAMPLE if r["category"] != DNE)
    assert ledger["ignored"] == dict(others)
    assert ledger["records"] == len(SAMPLE) == ledger["written"] + sum(others.values())
    assert ledger["quarantined"] == {}
    assert ledger["source"] == str(source.resolve())
    assert sorted(ledger["outputs"]) == [p.relative_to(lake).as_posix() for p in _lake_files(lake)]


def test_sample_odd_values_are_kept_as_the_contract_says(tmp_path: Path) -> None:
    _export(tmp_path, SAMPLE_LINES)
    lake = tmp_path / "lake"
    assert _ingest(tmp_path / "export", lake) == 0
    rows = _lake_rows(lake)
    by_report = {(r["ReportId"], r["RemoteIP"]): r for r in rows.to_dicts()}

    for record in SAMPLE_DNE:
        p = record["properties"]
        row = by_report[(p["ReportId"], p["RemoteIP"])]
        af = p["AdditionalFields"]
        if isinstance(af, dict):  # an object becomes its JSON text
            assert json.loads(row["AdditionalFields"]) == af
        else:  # text (or null) stays exactly as it was
            assert row["AdditionalFields"] == af
    # RemoteIP "-" is kept raw: the run's normaliser is what reads it as null
    assert rows.filter(pl.col("RemoteIP") == "-").height == 1

    # every file has the same typed schema, all-null columns included
    schemas = {
        tuple((k, v) for k, v in pl.read_parquet_schema(p).items() if k != "MachineGroup")
        for p in _lake_files(lake)
    }
    assert len(schemas) == 1
    schema = dict(next(iter(schemas)))
    assert schema["Timestamp"] == pl.Datetime("us", "UTC")
    assert schema["InitiatingProcessCreationTime"] == pl.Datetime("us", "UTC")
    assert schema["RemotePort"] == schema["LocalPort"] == pl.Int32
    assert schema["ReportId"] == schema["InitiatingProcessId"] == pl.Int64
    assert schema["AdditionalFields"] == schema["AppGuardContainerId"] == pl.String
    assert schema["IsInitiatingProcessRemoteSession"] == pl.Boolean
    assert rows["AppGuardContainerId"].null_count() == rows.height
    # an extra property Defender sent is carried as text in its partition
    assert rows["MachineGroup"].drop_nulls().to_list() == ["UnassignedGroup"]


def test_reingest_skips_unchanged_files_and_force_rewrites_the_same_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _export(tmp_path, SAMPLE_LINES)
    lake = tmp_path / "lake"
    assert _ingest(tmp_path / "export", lake) == 0
    first = _lake_rows(lake).sort("ReportId", "RemoteIP")
    files = {p: p.stat().st_mtime_ns for p in _lake_files(lake)}
    capsys.readouterr()

    assert _ingest(tmp_path / "export", lake) == 0
    assert "skipped  " in capsys.readouterr().out
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert _ingest(tmp_path / "export", lake) == 0  # touched, same bytes (a re-download)
    assert "skipped  " in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in _lake_files(lake)} == files

    assert _ingest(tmp_path / "export", lake, "--force") == 0
    assert "31 records = 17 rows" in capsys.readouterr().out
    assert set(_lake_files(lake)) == set(files)
    assert _lake_rows(lake).sort("ReportId", "RemoteIP").equals(first)


def test_a_changed_source_replaces_its_rows_including_partitions_it_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _export(tmp_path, SAMPLE_LINES)
    lake = tmp_path / "lake"
    assert _ingest(tmp_path / "export", lake) == 0
    assert (lake / "DeviceNetworkEvents" / "date=2022-11-09").is_dir()

    noon = [
        line
        for line, r in zip(SAMPLE_LINES, SAMPLE, strict=True)
        if r in SAMPLE_DNE and r["properties"]["Timestamp"].startswith("2023-07-19T12:")
    ]
    source.write_text("\n".join(noon) + "\n", encoding="utf-8")
    assert _ingest(tmp_path / "export", lake) == 0
    assert f"{len(noon)} records = {len(noon)} rows (1 partition(s))" in capsys.readouterr().out

    assert [p.parent.name for p in _lake_files(lake)] == ["hour=12"]
    assert not (lake / "DeviceNetworkEvents" / "date=2022-11-09").exists()
    rows = _lake_rows(lake)
    assert rows.height == len(noon) == 10
    assert rows.select("DeviceId", "Timestamp", "ReportId").is_unique().all()
    assert len(_ledger(lake)["outputs"]) == 1


def _dne(ts: str | None, report: int, **props: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"DeviceId": "dev-1", "ReportId": report, "ActionType": "ConnectionSuccess"}
    if ts is not None:
        p["Timestamp"] = ts
    p.update(props)
    return {"time": "2023-07-19T18:00:00Z", "tenantId": "t", "category": DNE, "properties": p}


def test_bad_lines_are_quarantined_with_file_line_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _dne("2023-07-19T12:00:00.1234567Z", 1, RemotePort="443", LocalPort=50000.0)
    lines = [
        json.dumps(good),  # 1
        '{"category": "AdvancedHunting-DeviceNetworkEvents", "properties": {',  # 2 truncated
        "[1, 2]",  # 3 not a record
        json.dumps({"properties": good["properties"]}),  # 4 no category
        json.dumps({**good, "category": "SomethingElse"}),  # 5 ignored, counted by category
        json.dumps(_dne(None, 2)),  # 6 no Timestamp
        json.dumps(_dne("yesterday", 3)),  # 7
        json.dumps(_dne("2023-07-19T12:00:01Z", 4, LocalPort="abc")),  # 8
        "",  # blank lines are not records
        json.dumps({"records": [_dne("2023-07-19T12:00:02Z", 5), 7]}),  # 10: one good, one bad
        json.dumps({**good, "category": "advancedhunting-devicenetworkevents"}),  # 11 case
    ]
    source = _export(tmp_path, lines)
    lake = tmp_path / "lake"
    assert _ingest(tmp_path / "export", lake) == 0  # bad records never fail the ingest
    out = capsys.readouterr().out
    assert "11 records = 3 rows (1 partition(s)) + 1 ignored + 7 quarantined" in out
    assert re.search(r"\n +malformed_json +1\n", out)

    quarantined = {(q["Line"], q["Record"]): q for q in _quarantine(lake)}
    assert {k: q["Reason"] for k, q in quarantined.items()} == {
        (2, None): "malformed_json",
        (3, None): "not_an_object",
        (4, None): "no_category",
        (6, None): "missing_Timestamp",
        (7, None): "bad_Timestamp",
        (8, None): "bad_LocalPort",
        (10, 1): "not_an_object",
    }
    assert all(q["SourceFile"] == str(source) for q in quarantined.values())
    assert quarantined[(2, None)]["Raw"] == lines[1]
    assert json.loads(quarantined[(8, None)]["Raw"])["properties"]["LocalPort"] == "abc"
    assert "'abc'" in quarantined[(8, None)]["Detail"]

    ledger = _ledger(lake)
    assert ledger["ignored"] == {"SomethingElse": 1}
    assert sum(ledger["quarantined"].values()) == 7
    assert ledger["records"] == ledger["written"] + 1 + 7
    rows = _lake_rows(lake).sort("ReportId")
    assert rows["ReportId"].to_list() == [1, 1, 5]
    assert rows["RemotePort"].to_list()[0] == 443 and rows["LocalPort"].to_list()[0] == 50000
    assert rows["Timestamp"][0] == datetime.fromisoformat("2023-07-19T12:00:00.123456+00:00")

    # once the file is fixed, its quarantine goes with the old outputs
    source.write_text(json.dumps(good) + "\n", encoding="utf-8")
    assert _ingest(tmp_path / "export", lake) == 0
    assert _quarantine(lake) == []


CAPTURE_SCHEMA = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": ["long", "string"]}},
        {"name": "Properties", "type": {"type": "map", "values": ["long", "string", "null"]}},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}


def _capture(path: Path, bodies: list[bytes | None]) -> Path:
    """An Event Hub capture file as the service writes it: one Avro record per event."""
    events = [
        {
            "SequenceNumber": i,
            "Offset": str(i * 1000),
            "EnqueuedTimeUtc": "7/19/2023 6:03:21 PM",
            "SystemProperties": {},
            "Properties": {},
            "Body": body,
        }
        for i, body in enumerate(bodies)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(CAPTURE_SCHEMA), events)
    return path


def _envelope(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"records": records}).encode()


def test_event_hub_capture_avro_is_read(tmp_path: Path) -> None:
    half = len(SAMPLE) // 2
    capture = tmp_path / "capture" / "ns" / "hub" / "0" / "2023" / "07" / "19" / "18" / "03"
    _capture(capture / "21.avro", [_envelope(SAMPLE[:half]), _envelope(SAMPLE[half:]), None])
    lake = tmp_path / "lake"
    assert _ingest(tmp_path / "capture", lake) == 0
    rows = _lake_rows(lake)
    assert rows.height == len(SAMPLE_DNE)
    assert set(rows["ReportId"]) == {r["properties"]["ReportId"] for r in SAMPLE_DNE}
    ledger = _ledger(lake)
    assert ledger["quarantined"] == {"no_body": 1}
    assert ledger["records"] == len(SAMPLE) + 1
    (q,) = _quarantine(lake)
    assert (q["Line"], q["Reason"]) == (3, "no_body")


def test_an_unreadable_file_is_named_and_the_others_still_ingest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(tmp_path, SAMPLE_LINES)
    good = _capture(tmp_path / "export" / "capture" / "good.avro", [_envelope(SAMPLE_DNE[:3])])
    data = good.read_bytes()
    bad = good.with_name("bad.avro")
    bad.write_bytes(data[: len(data) - 40] + b"\x00" * 40)  # a damaged last block
    (tmp_path / "export" / "garbage.avro").write_bytes(b"Obj\x01 this is not avro")
    lake = tmp_path / "lake"

    assert _ingest(tmp_path / "export", lake) == 3
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    failed = [line for line in errors if line.startswith("proxylink: error:")]
    assert len(failed) == 2
    assert any(str(bad) in line for line in failed)
    assert any("garbage.avro" in line for line in failed)
    assert "2 ingested, 0 skipped, 2 failed" in captured.out
    # the good files are in; a failed file leaves no output and no ledger entry behind
    assert _lake_rows(lake).height == len(SAMPLE_DNE) + 3
    assert len(list((lake / "_ingest" / "ledger").glob("*.json"))) == 2
    assert not list((lake / "DeviceNetworkEvents").rglob(".*"))


def test_small_batches_and_late_extra_columns_give_the_same_rows(tmp_path: Path) -> None:
    records = [_dne(f"2023-07-19T12:00:{i:02d}Z", i, RemotePort=443) for i in range(7)]
    for r in records[4:]:
        r["properties"]["SomeNewColumn"] = {"added": "later"}
    _export(tmp_path, [json.dumps(r) for r in records])
    lake = tmp_path / "lake"
    assert _ingest(tmp_path / "export", lake, "--batch-rows", "2") == 0
    names = sorted(p.name for p in _lake_files(lake))
    assert len(names) == 2 and names[0].endswith("-1.parquet")  # a second part with the column
    rows = _lake_rows(lake).sort("ReportId")
    assert rows["ReportId"].to_list() == list(range(7))
    assert rows["SomeNewColumn"].to_list() == [None] * 4 + ['{"added":"later"}'] * 3
    assert pl.scan_parquet(_lake_files(lake)[1]).select(pl.len()).collect().item() == 4


def test_a_second_ingest_on_the_same_lake_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(tmp_path, SAMPLE_LINES)
    lake = tmp_path / "lake"
    with curated_lock(lake / "_ingest", 0, "another ingest"):
        assert _ingest(tmp_path / "export", lake) == 4
    assert "another ingest is writing" in capsys.readouterr().err
    assert not _lake_files(lake)


def test_missing_source_is_one_line_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _ingest(tmp_path / "nowhere", tmp_path / "lake") == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err


def test_ingested_lake_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sample plus a capture with one proxied connection: ingest, then run the day."""
    _export(tmp_path, SAMPLE_LINES)
    socket = {"DeviceName": "ws-9", "LocalIP": "10.1.2.3", "LocalPort": 50123, "Protocol": "Tcp"}
    proxy = {"RemoteIP": "10.20.0.5", "RemotePort": 8080, **socket}
    leg = _dne(
        "2023-07-19T10:00:00.2Z",
        101,
        InitiatingProcessId=4242,
        InitiatingProcessCreationTime="2023-07-19T08:00:00Z",
        InitiatingProcessFileName="msedge.exe",
        **proxy,
    )
    connect = {"method": "CONNECT", "host": "example.org", "uri": "example.org:443"}
    evidence = _dne(
        "2023-07-19T10:00:00.7Z",
        102,
        ActionType="HttpConnectionInspected",
        InitiatingProcessId=0,
        AdditionalFields=connect,
        **proxy,
    )
    _capture(tmp_path / "export" / "capture" / "00.avro", [_envelope([leg, evidence])])
    lake, curated = tmp_path / "lake", tmp_path / "curated"
    assert _ingest(tmp_path / "export", lake) == 0
    capsys.readouterr()

    args = ["run", "--date", "2023-07-19", "--events", str(lake / "DeviceNetworkEvents")]
    args += ["--curated", str(curated), "--proxy", "10.20.0.5:8080"]
    assert main([*args, "--proxy", "175.16.199.0:8080"]) == 0
    assert "published 2023-07-19" in capsys.readouterr().out
    table = pl.read_delta(str(curated / "connection_success"))
    linked = table.filter(pl.col("DeviceId") == "dev-1").to_dicts()
    assert [(r["RemoteUrl"], r["LinkMethod"], r["TargetPort"]) for r in linked] == [
        ("example.org", "socket", 443)
    ]
    assert table.filter(pl.col("DeviceId") != "dev-1").height >= 1  # the sample's own row
    # the sample's "-" twin of an inspection row: read as a null RemoteIP, so it clashes with
    # the real row on the event key and is rejected by the run, not by the ingest
    rejects = pl.read_delta(str(curated / "rejects"))
    assert rejects["RejectReason"].to_list() == ["duplicate_key"]
    assert rejects["ReportId"].to_list() == ["18984951960"]  # rejects keep text
