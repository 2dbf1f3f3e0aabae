"""Bad input: one clear line and a meaningful exit code, or quarantine with reconciled counts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from proxylink.jobs.cli import main
from proxylink.transforms import schema as s
from tests.helpers import direct, frame, http_row, leg, np_row, ssl_row, write_lake

DAY = "2026-11-01"


# Tiny lakes with one bad row in four would (rightly) fail the input suite's rate thresholds;
# these tests are about quarantine, so they allow any rate.
TOLERANT = """expectations:
  input: {max_null_key_rate: 1, max_bad_value_rate: 1, max_bad_port_rate: 1,
          max_outside_partition_rate: 1}
"""


def run_cli(
    capsys: pytest.CaptureFixture[str],
    events: Path,
    curated: Path,
    *extra: str,
    engine: str = "polars",
) -> tuple[int, str]:
    extra = (*extra, "--engine", engine)
    if "--conf" not in extra:
        conf = curated.parent / "tolerant.yaml"
        conf.write_text(TOLERANT)
        extra = (*extra, "--conf", str(conf))
    code = main(
        [
            "run",
            "--date",
            DAY,
            "--events",
            str(events),
            "--curated",
            str(curated),
            "--proxy",
            "10.20.0.5:8080",
            *extra,
        ]
    )
    err = capsys.readouterr().err
    return code, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("proxylink: ")]


def manifest(curated: Path) -> dict:
    (path,) = (curated / "_manifests" / f"date={DAY}").glob("*.json")
    return json.loads(path.read_text())


def test_missing_required_column_names_file_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    events = write_lake(tmp_path, frame([leg(0)]).drop(s.LOCAL_PORT))
    code, err = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 3
    assert "LocalPort" in err and "part-0.parquet" in err
    assert "Traceback" not in err
    assert not (tmp_path / "cur" / "connection_success").exists()


def test_corrupt_file_fails_by_default_and_is_skipped_when_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    events = write_lake(tmp_path, frame([leg(0, 50001), np_row(10, "ok.com", 50001)]))
    bad = events / f"date={DAY}" / "hour=12" / "part-1.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    code, err = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 3
    assert str(bad) in err and "Traceback" not in err

    conf = tmp_path / "skip.yaml"
    conf.write_text("input:\n  on_corrupt_file: skip\n" + TOLERANT)
    code, err = run_cli(capsys, events, tmp_path / "cur", "--conf", str(conf), engine=engine)
    assert code == 0
    m = manifest(tmp_path / "cur")
    assert [f["path"] for f in m["skipped_files"]] == [str(bad)]
    assert m["counts"]["curated"] == 1


def test_corrupt_data_pages_name_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    rows = [leg(i * 10, 50000 + i, RemoteUrl=f"pad{i}" * 20) for i in range(2000)]
    events = write_lake(tmp_path, frame(rows))
    path = events / f"date={DAY}" / "hour=12" / "part-0.parquet"
    data = bytearray(path.read_bytes())
    for i in range(200, len(data) // 2):
        data[i] = 0xFF
    path.write_bytes(bytes(data))
    code, err = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 3
    assert str(path) in err and "Traceback" not in err


def test_date_with_no_partitions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = write_lake(tmp_path, frame([leg(0)]))
    code = main(
        [
            "run",
            "--date",
            "2026-11-05",
            "--events",
            str(events),
            "--curated",
            str(tmp_path / "c"),
            "--proxy",
            "10.20.0.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert error_lines(err) == [
        f"proxylink: error: 2026-11-05: no partitions for 2026-11-05 under {events} "
        f"(expected {events}/date=2026-11-05/)"
    ]


def test_ports_as_strings_are_parsed_and_bad_ones_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    df = frame(
        [leg(0, 50001), np_row(10, "str.com", 50001), leg(100, 50002), leg(200, 50003)]
    ).with_columns(pl.col(s.LOCAL_PORT).cast(pl.String), pl.col(s.REMOTE_PORT).cast(pl.String))
    df = df.with_columns(
        pl.when(pl.col(s.LOCAL_PORT) == "50002")
        .then(pl.lit("abc"))
        .when(pl.col(s.LOCAL_PORT) == "50003")
        .then(pl.lit(" "))
        .otherwise(pl.col(s.LOCAL_PORT))
        .alias(s.LOCAL_PORT)
    )
    events = write_lake(tmp_path, df)
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    cur = pl.read_delta(str(tmp_path / "cur" / "connection_success"))
    assert cur.schema[s.LOCAL_PORT] == pl.Int32
    assert sorted(cur[s.REMOTE_URL].to_list(), key=str) == [None, "str.com"]
    rejects = pl.read_delta(str(tmp_path / "cur" / "rejects"))
    assert rejects[s.REJECT_REASON].to_list() == ["bad_LocalPort"]
    assert '"LocalPort":"abc"' in rejects[s.REJECT_RECORD][0]
    assert rejects[s.SOURCE_FILE][0].endswith("part-0.parquet")
    m = manifest(tmp_path / "cur")
    assert m["reconciliation"]["balanced"]
    assert m["counts"]["rows_in_day"] == 4


@pytest.mark.parametrize(
    "fields", ["{not json", "null", "42", "[1,2,3]", '"x.com"', " true ", '[{"host":"x.com"}]']
)
def test_additional_fields_that_is_not_a_json_object_is_quarantined_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str, fields: str
) -> None:
    rows = [leg(0, 50001), http_row(10, "x.com", 50001, AdditionalFields=fields)]
    rows.append(ssl_row(20, "x.com", 50001, AdditionalFields=fields))
    events = write_lake(tmp_path, frame(rows))
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    rejects = pl.read_delta(str(tmp_path / "cur" / "rejects"))
    assert rejects[s.REJECT_REASON].to_list() == ["bad_AdditionalFields"] * 2
    cur = pl.read_delta(str(tmp_path / "cur" / "connection_success"))
    assert cur[s.LINK_METHOD].to_list() == ["unlinked"]


def test_null_device_and_timestamp_are_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    df = frame([leg(0, 50001), leg(10, 50002, DeviceId=None), leg(20, 50003, DeviceId="")])
    # A Timestamp that does not parse, in a file that stores it as text.
    extra = frame([leg(30, 50004)]).with_columns(pl.lit("yesterday-ish").alias(s.TIMESTAMP))
    events = write_lake(tmp_path, df)
    extra.write_parquet(events / f"date={DAY}" / "hour=12" / "part-1.parquet")
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    rejects = pl.read_delta(str(tmp_path / "cur" / "rejects"))
    assert sorted(rejects[s.REJECT_REASON].to_list()) == [
        "bad_Timestamp",
        "null_DeviceId",
        "null_DeviceId",
    ]
    m = manifest(tmp_path / "cur")
    assert m["counts"] | {} == m["counts"]
    assert m["counts"]["rows_in_day"] == 4
    assert m["counts"]["curated"] == 1 and m["counts"]["rejected"] == 3
    assert m["reconciliation"]["balanced"]


def test_exact_duplicates_are_dropped_and_key_clashes_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    a = leg(0, 50001)
    clash = dict(a, LocalPort=50099)  # same key, other content
    events = write_lake(tmp_path, frame([a, dict(a), clash]))
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    m = manifest(tmp_path / "cur")
    assert (m["counts"]["curated"], m["counts"]["duplicate"], m["counts"]["rejected"]) == (1, 1, 1)
    assert m["reject_reasons"] == {"duplicate_key": 1}


@pytest.mark.parametrize(
    ("change", "clashes"),
    [
        ({s.REMOTE_IP: "::ffff:10.20.0.5"}, True),  # another spelling is other content
        ({s.DEVICE_NAME: "other-host"}, True),
        ({"InitiatingProcessFileName": "other.exe"}, True),  # a column linking never reads
        ({s.ADDITIONAL_FIELDS: '{"direction":"In"}'}, True),
        ({s.ADDITIONAL_FIELDS: '{ "direction" : "Out" }'}, False),  # JSON spaced otherwise
        ({s.DEVICE_NAME: "  "}, False),  # blank is no value: the copies agree
    ],
)
def test_rows_sharing_a_key_are_compared_in_every_column(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    engine: str,
    change: dict[str, str],
    clashes: bool,
) -> None:
    """Copies of one event are compared in the columns linking reads and in those it never
    reads alike: any difference in a column both carry is a clash, a blank is no value."""
    a = leg(0, 50001, **{s.ADDITIONAL_FIELDS: '{"direction":"Out"}'})
    events = write_lake(tmp_path, frame([a, dict(a, **change)]))
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    m = manifest(tmp_path / "cur")
    assert m["counts"]["curated"] == 1
    assert m["reject_reasons"] == ({"duplicate_key": 1} if clashes else {})
    assert m["counts"]["duplicate"] == (0 if clashes else 1)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--proxy", "10.20.0.999"], "is not an IP address"),
        (["--proxy", "10.20.0.5:70000"], "port must be 1..65535"),
        (["--date", "2026-13-01"], "no such day"),
        (["--date", "01/11/2026"], "expected YYYY-MM-DD"),
        (["--tolerance", "-1"], "must be positive"),
    ],
)
def test_invalid_flags_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    base = {"--date": DAY, "--events": str(tmp_path), "--curated": str(tmp_path / "c")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["run", *[x for kv in base.items() for x in kv]]
    if "--proxy" in args:
        argv += ["--proxy", args[args.index("--proxy") + 1]]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "cannot read config"),
        ("link: [unclosed", "not valid YAML"),
        ("link:\n  tolerence_seconds: 3\n", "link.tolerence_seconds: unknown setting"),
        ("link:\n  tolerance_seconds: -2\n", "link.tolerance_seconds"),
        ("proxies: [not-an-ip]\n", "is not an IP address"),
        ("input:\n  on_corrupt_file: maybe\n", "input.on_corrupt_file"),
        ("- just\n- a list\n", "must be a mapping"),
        (b"\xff\xfe", "is not UTF-8 text (byte 0xff at line 1)"),
        (b"link:\n  tolerance_seconds: 3 # caf\xe9\n", "is not UTF-8 text (byte 0xe9 at line 2)"),
    ],
)
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str | bytes | None,
    needle: str,
    engine: str,
) -> None:
    conf = tmp_path / "conf.yaml"
    if isinstance(text, bytes):  # a file saved in another encoding
        conf.write_bytes(text)
    elif text is not None:
        conf.write_text(text)
    code, err = run_cli(capsys, tmp_path, tmp_path / "c", "--conf", str(conf), engine=engine)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and needle in lines[0], err


def test_missing_settings_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--date", DAY, "--events", str(tmp_path), "--proxy", "10.0.0.1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no curated path" in err


def test_additional_fields_stored_as_an_object_is_read_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    df = frame([leg(0, 50001), http_row(10, "obj.example.com", 50001)])
    as_struct = df.with_columns(
        pl.col(s.ADDITIONAL_FIELDS).str.json_decode(
            pl.Struct(
                {"direction": pl.String, "host": pl.String, "method": pl.String, "uri": pl.String}
            )
        )
    )
    events = write_lake(tmp_path, as_struct)
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    cur = pl.read_delta(str(tmp_path / "cur" / "connection_success"))
    assert cur[s.REMOTE_URL].to_list() == ["obj.example.com"]
    assert cur[s.EVIDENCE_SOURCE].to_list() == ["HttpConnectionInspected"]


LOG_ANALYTICS = {
    "TenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "SourceSystem": "",
    "MachineGroup": "Workstations",
    "TimeGenerated": "2026-11-01T12:03:11.1234567Z",
    "Type": "DeviceNetworkEvents",
}


def test_one_event_in_two_files_with_other_columns_is_one_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    """The same events exported twice, the second time by Log Analytics (its own columns, no
    InitiatingProcessFileName, JSON spaced otherwise): duplicates, the fuller copy kept. A row
    that differs in a column both carry is still a clash."""
    a, b = leg(0, 50001), http_row(10, "dup.example.com", 50001)
    clash = leg(500, 50002)
    events = write_lake(tmp_path, frame([a, b, clash]))
    again = frame([a, b, dict(clash, LocalPort=50099)]).drop("InitiatingProcessFileName")
    again = again.with_columns(
        *[pl.lit(v).alias(k) for k, v in LOG_ANALYTICS.items()],
        pl.col(s.ADDITIONAL_FIELDS).str.replace_all(",", ", "),
    )
    again.write_parquet(events / f"date={DAY}" / "hour=12" / "part-1.parquet")
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    m = manifest(tmp_path / "cur")
    assert (m["counts"]["duplicate"], m["reject_reasons"]) == (2, {"duplicate_key": 1})
    cur = pl.read_delta(str(tmp_path / "cur" / "connection_success")).sort(s.TIMESTAMP)
    assert cur[s.REMOTE_URL].to_list() == ["dup.example.com", None]
    # The copy with the most values is kept: the Log Analytics columns are published.
    assert cur["TenantId"].to_list()[0] == LOG_ANALYTICS["TenantId"]
    assert m["reconciliation"]["balanced"]


def test_kusto_text_timestamps_with_seven_digits_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    """Kusto writes timestamps as text with seven fractional digits and a Z."""
    rows = frame([leg(0, 50001), np_row(10, "kusto.example.com", 50001)])
    text = rows.with_columns(
        pl.col(s.TIMESTAMP).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f1Z"),
        pl.col(s.PROCESS_CREATION).dt.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
    )
    events = write_lake(tmp_path, rows)
    text.write_parquet(events / f"date={DAY}" / "hour=12" / "part-0.parquet")
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    cur = pl.read_delta(str(tmp_path / "cur" / "connection_success"))
    assert cur[s.REMOTE_URL].to_list() == ["kusto.example.com"]
    assert cur[s.TIMESTAMP].dt.microsecond().to_list() == [0]
    assert manifest(tmp_path / "cur")["counts"]["rejected"] == 0


def test_files_typed_by_different_writers_are_one_lake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    """One hour written three ways: nanosecond timestamps with int64 ports, text ports, and
    microseconds with int32 ports but one optional column fewer."""
    events = write_lake(tmp_path, frame([leg(0, 50001), np_row(10, "ns.example.com", 50001)]))
    hour = events / f"date={DAY}" / "hour=12"
    ns = frame([leg(0, 50001), np_row(10, "ns.example.com", 50001)]).with_columns(
        pl.col(s.TIMESTAMP).dt.cast_time_unit("ns"),
        pl.col(s.LOCAL_PORT).cast(pl.Int64),
        pl.col(s.REMOTE_PORT).cast(pl.Int64),
    )
    ns.write_parquet(hour / "part-0.parquet")
    text = frame([leg(100, 50002), ssl_row(110, "text.example.com", 50002)]).with_columns(
        pl.col(s.LOCAL_PORT).cast(pl.String), pl.col(s.REMOTE_PORT).cast(pl.String)
    )
    text.write_parquet(hour / "part-1.parquet")
    fewer = frame([leg(200, 50003), http_row(210, "fewer.example.com", 50003)])
    fewer.drop("InitiatingProcessFileName").write_parquet(hour / "part-2.parquet")
    code, _ = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 0
    cur = pl.read_delta(str(tmp_path / "cur" / "connection_success")).sort(s.TIMESTAMP)
    assert cur[s.REMOTE_URL].to_list() == [
        "ns.example.com",
        "text.example.com",
        "fewer.example.com",
    ]
    assert cur[s.LOCAL_PORT].to_list() == [50001, 50002, 50003]
    assert cur["InitiatingProcessFileName"].to_list() == ["msedge.exe", "msedge.exe", None]


# --- destination names: one bad value never blocks the day ----------------------------------

LONG_NAME = ".".join(["a" * 60] * 165)  # 9,959 bytes
NOT_NAMES = ["exa mple.com", "javascript:alert(1)", "evil\x00.example.com", "a" * 64 + ".com",
             LONG_NAME]  # fmt: skip
IDN = {"bücher.example.de": "xn--bcher-kva.example.de", "💩.la": "xn--ls8h.la",
       "HTTPS://BÜCHER.Example.DE/katalog": "xn--bcher-kva.example.de"}  # fmt: skip


def named_rows(names: list[str], good: int) -> pl.DataFrame:
    """`good` direct rows with a clean name, then one direct row and one proxied pair per name
    (a leg and its network-protection row naming it): the pair's leg then has no evidence."""
    rows = [direct(i * 10, **{s.REMOTE_URL: "ok.example.com", s.LOCAL_PORT: 1000 + i})
            for i in range(good)]  # fmt: skip
    for i, name in enumerate(names):
        rows.append(direct(60_000 + i * 10, **{s.REMOTE_URL: name, s.LOCAL_PORT: 20000 + i}))
        rows += [leg(90_000 + i * 10, 30000 + i), np_row(90_005 + i * 10, name, 30000 + i)]
    return frame(rows)


def test_international_names_are_kept_as_idna_and_non_names_never_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    names = [*IDN, *NOT_NAMES]
    events = write_lake(tmp_path, named_rows(names, good=1500))
    (tmp_path / "d.yaml").write_text("{}")
    code, err = run_cli(capsys, events, tmp_path / "cur", "--conf", str(tmp_path / "d.yaml"),
                        engine=engine)  # fmt: skip
    assert code == 0, err  # defaults: 5 bad of ~1,530 rows in the file is under 1 %
    cur = pl.read_delta(str(tmp_path / "cur" / "connection_success"))
    assert cur.height == 1500 + 2 * len(names)  # every connection is published once
    direct_rows = cur.filter(pl.col(s.LOCAL_PORT).is_between(20000, 20100)).sort(s.LOCAL_PORT)
    assert direct_rows[s.REMOTE_URL].to_list() == [*IDN.values(), *[None] * len(NOT_NAMES)]
    assert direct_rows[s.REMOTE_URL_RAW].to_list() == [*[None] * len(IDN), *NOT_NAMES]
    legs = cur.filter(pl.col(s.LOCAL_PORT).is_between(30000, 30100)).sort(s.LOCAL_PORT)
    assert legs[s.REMOTE_URL].to_list() == [*IDN.values(), *[None] * len(NOT_NAMES)]
    assert legs[s.LINK_METHOD].to_list() == ["socket"] * len(IDN) + ["unlinked"] * len(NOT_NAMES)
    assert cur[s.REMOTE_URL].drop_nulls().str.len_bytes().max() <= 253
    profile = {r["file"]: r for r in manifest(tmp_path / "cur")["input_profile"]}
    (file_profile,) = profile.values()
    assert file_profile["bad_host_name_rate"] == pytest.approx(10 / (1500 + 3 * len(names)))


def test_many_names_that_are_not_host_names_fail_the_day_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    events = write_lake(tmp_path, named_rows(NOT_NAMES, good=20))
    (tmp_path / "d.yaml").write_text("{}")
    code, err = run_cli(capsys, events, tmp_path / "cur", "--conf", str(tmp_path / "d.yaml"),
                        engine=engine)  # fmt: skip
    assert code == 1
    assert "input.host_names_valid" in err and "part-0.parquet" in err, err
    assert "files over the max_bad_host_name_rate of 1.00%" in err
    assert "\x00" not in err  # control bytes are escaped in what the job prints
    assert not (tmp_path / "cur" / "connection_success" / "_delta_log").exists()


def test_a_file_in_an_invalid_partition_fails_the_day_or_is_skipped_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    events = write_lake(tmp_path, frame([leg(0, 50001), np_row(5, "a.example.com", 50001)]))
    stray = events / f"date={DAY}" / "hour=99" / "part-0.parquet"
    stray.parent.mkdir()
    frame([leg(10, 50002)]).write_parquet(stray)
    code, err = run_cli(capsys, events, tmp_path / "cur", engine=engine)
    assert code == 3
    (line,) = error_lines(err)
    assert line.startswith(f"proxylink: error: {DAY}: {stray} is in hour=99/: the hour '99' is")
    assert "input.on_invalid_partition: skip" in line

    conf = tmp_path / "skip.yaml"
    conf.write_text(TOLERANT + "input: {on_invalid_partition: skip}\n")
    code, err = run_cli(capsys, events, tmp_path / "cur", "--conf", str(conf), engine=engine)
    assert code == 0, err
    m = manifest(tmp_path / "cur")
    why = "in hour=99/: the hour '99' is not 0..23: invalid partition, skipped"
    assert m["skipped_files"] == [{"path": str(stray), "why": why}]
    assert m["counts"]["rows_in_day"] == 2  # the stray file's row is not counted
    assert str(stray) not in [f["path"] for f in m["inputs"]]
    assert f"not reading {stray}: {why}" in err  # the warning
