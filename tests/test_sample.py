"""The sample generator models the messy shapes real exports have, and each can be left out."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from proxylink.jobs.cli import main
from proxylink.jobs.cli.parse import SHAPES
from proxylink.jobs.sample import Rates, SampleSpec, Shapes, write_sample
from proxylink.transforms import schema as s

PROXIES = [ip for ip, _ in SampleSpec().proxies]


def _shapes_seen(lake: Path) -> dict[str, bool]:
    """Which shapes the written lake shows, read straight from its files."""
    files = sorted(lake.glob("DeviceNetworkEvents/*/*/*.parquet"))
    schemas = [pq.read_schema(f) for f in files]
    columns = [s.ACTION_TYPE, s.REMOTE_IP, s.REMOTE_URL, s.LOCAL_PORT, s.ADDITIONAL_FIELDS]
    rows = pl.concat(
        [pl.read_parquet(f, columns=columns).cast(pl.String) for f in files], how="vertical"
    )
    http = rows.filter(pl.col(s.ACTION_TYPE) == s.HTTP_INSPECTED)
    success = rows.filter(pl.col(s.ACTION_TYPE) == s.CONNECTION_SUCCESS)
    truth = pl.read_parquet(lake / "truth" / "connections.parquet")
    return {
        # a GET through the proxy (GETs to direct targets are background in every lake)
        "plain_http": http.filter(pl.col(s.REMOTE_IP).is_in(PROXIES))[s.ADDITIONAL_FIELDS]
        .str.contains('"method":"GET"')
        .any(),
        "keepalive_hosts": truth["keepalive"].any(),
        "portless_np": truth["np_portless"].any(),
        "target_ip_np": truth["np_shape2"].any(),
        "target_ip_portless": truth["np_target_portless"].any(),
        "np_throttle": truth["np_throttled"].any(),
        "port_pool": truth["port_pool"].any(),
        "sensor_skew": truth["sensor_skewed"].any(),
        "mapped_sockets": success[s.REMOTE_IP].str.starts_with("::ffff:").any(),
        "url_forms": success[s.REMOTE_URL].str.starts_with("https://").any(),
        "connect_port": http[s.ADDITIONAL_FIELDS].str.contains(r'"host":"[^"]*:443"').any(),
        "schema_drift": len({str(sc.field(s.TIMESTAMP).type) for sc in schemas}) > 1,
        "log_analytics": any("TenantId" in sc.names for sc in schemas),
    }


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    out = {}
    for name, shapes in {
        "default": Shapes(),
        "clean": Shapes.none(),
        "no_plain": Shapes().without(["plain_http", "mapped_sockets"]),
    }.items():
        write_sample(root / name, SampleSpec(devices=60, seed=3, shapes=shapes))
        out[name] = root / name
    return out


def test_the_default_lake_has_every_shape(lakes: dict[str, Path]) -> None:
    seen = _shapes_seen(lakes["default"])
    assert [name for name, there in seen.items() if not there] == []


def test_a_clean_lake_has_none_and_each_shape_can_be_left_out(lakes: dict[str, Path]) -> None:
    assert [n for n, there in _shapes_seen(lakes["clean"]).items() if there] == []
    seen = _shapes_seen(lakes["no_plain"])
    assert not seen["plain_http"] and not seen["mapped_sockets"]
    assert seen["target_ip_np"] and seen["schema_drift"]


def test_the_base_rates_are_the_spec_s_and_change_the_lake(tmp_path: Path) -> None:
    """Every rate the generator draws with is a field of `Rates`: turning the inspection sensor
    off leaves (but for a bad row or two) no inspected row on a proxy socket, and no
    duplicates leaves none."""

    def inspected_on_proxies_and_rows(rates: Rates) -> tuple[int, int, int]:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        spec = SampleSpec(devices=30, seed=5, connections_per_device=60, rates=rates)
        summary = write_sample(out, spec)
        rows = pl.concat(
            [
                pl.read_parquet(f, columns=[s.ACTION_TYPE, s.REMOTE_IP])
                for f in sorted(out.glob("DeviceNetworkEvents/*/*/*.parquet"))
            ]
        )
        inspected = rows.filter(
            pl.col(s.ACTION_TYPE).is_in([s.HTTP_INSPECTED, s.SSL_INSPECTED])
            & pl.col(s.REMOTE_IP).is_in(PROXIES)
        )
        distinct = pl.read_parquet(out / "truth" / "events.parquet").height
        return inspected.height, summary.events, distinct

    with_sensor, rows, distinct = inspected_on_proxies_and_rows(Rates())
    assert with_sensor > 100 and rows > distinct  # the defaults: inspected rows and duplicates
    assert Rates().inspection == 0.7
    without, rows, distinct = inspected_on_proxies_and_rows(
        Rates(inspection=0.0, exact_duplicates=0.0)
    )
    assert without <= 2
    assert rows == distinct


def test_the_command_names_every_shape_and_refuses_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Shapes.names() == SHAPES
    with pytest.raises(SystemExit) as done:
        main(["sample", "--out", str(tmp_path), "--without", "plain_http,nonsense"])
    assert done.value.code == 2
    assert "unknown shape(s) nonsense" in capsys.readouterr().err
    assert main(["sample", "--out", str(tmp_path / "l"), "--devices", "5", "--clean"]) == 0
