"""Small inline fixtures: events in advanced-hunting shape, written as a Hive-partitioned lake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms.types import polars_schema

PROXY = "10.20.0.5"
PROXY_PORT = 8080
DEVICE = "d" * 40
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
PCT = datetime(2026, 11, 1, 8, 0, 0, tzinfo=UTC)

SCHEMA: dict[str, pl.DataType] = polars_schema(
    (
        s.TIMESTAMP,
        s.DEVICE_ID,
        s.DEVICE_NAME,
        s.ACTION_TYPE,
        s.REMOTE_IP,
        s.REMOTE_PORT,
        s.REMOTE_URL,
        s.LOCAL_IP,
        s.LOCAL_PORT,
        s.PROTOCOL,
        s.PROCESS_ID,
        s.PROCESS_CREATION,
        s.PROCESS_FILE_NAME,
        s.REPORT_ID,
        s.ADDITIONAL_FIELDS,
    )
)

_report_ids = iter(range(1, 10_000_000))


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def _base(ts: datetime, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        s.TIMESTAMP: ts,
        s.DEVICE_ID: DEVICE,
        s.DEVICE_NAME: "ws-1.contoso.com",
        s.ACTION_TYPE: s.CONNECTION_SUCCESS,
        s.REMOTE_IP: PROXY,
        s.REMOTE_PORT: PROXY_PORT,
        s.REMOTE_URL: None,
        s.LOCAL_IP: "10.1.2.3",
        s.LOCAL_PORT: 50000,
        s.PROTOCOL: "Tcp",
        s.PROCESS_ID: 4242,
        s.PROCESS_CREATION: PCT,
        "InitiatingProcessFileName": "msedge.exe",
        s.REPORT_ID: next(_report_ids),
        s.ADDITIONAL_FIELDS: None,
    }
    row.update(kw)
    return row


def leg(ms: float = 0, port: int | None = 50000, **kw: Any) -> dict[str, Any]:
    """A ConnectionSuccess to the proxy with no domain: the row analysts need enriched."""
    return _base(at(ms), **{s.LOCAL_PORT: port, **kw})


def np_row(ms: float, domain: str, port: int | None = 50000, **kw: Any) -> dict[str, Any]:
    """Network-protection ConnectionSuccess naming the real domain, on the proxy socket."""
    return _base(at(ms), **{s.LOCAL_PORT: port, s.REMOTE_URL: domain, **kw})


def http_row(ms: float, domain: str, port: int = 50000, target: int = 443, **kw: Any) -> dict:
    fields = f'{{"direction":"Out","host":"{domain}","method":"CONNECT","uri":"{domain}:{target}"}}'
    return _inspected(ms, port, fields, **kw)


def _inspected(ms: float, port: int, fields: str, **kw: Any) -> dict[str, Any]:
    """An HttpConnectionInspected row: the sensor records no process."""
    return _base(
        at(ms),
        **{
            s.ACTION_TYPE: s.HTTP_INSPECTED,
            s.LOCAL_PORT: port,
            s.PROCESS_ID: 0,
            s.PROCESS_CREATION: None,
            s.PROCESS_FILE_NAME: None,
            s.ADDITIONAL_FIELDS: fields,
            **kw,
        },
    )


def request_row(
    ms: float,
    host: str | None,
    uri: str,
    port: int = 50000,
    method: str = "GET",
    **kw: Any,
) -> dict[str, Any]:
    """A plain-HTTP request through the proxy (no CONNECT): the Host header and the URI, which
    a proxy client writes absolute (`http://host/path`)."""
    fields = {"direction": "Out", "method": method, "uri": uri, "status_code": "200"}
    if host is not None:
        fields["host"] = host
    return _inspected(ms, port, json.dumps(fields), **kw)


def target_np(ms: float, domain: str, port: int | None = 50000, **kw: Any) -> dict[str, Any]:
    """Network protection showing the real target's socket (not the proxy's) and the domain."""
    return np_row(ms, domain, port, **{s.REMOTE_IP: "93.184.216.34", s.REMOTE_PORT: 443, **kw})


def ssl_row(ms: float, domain: str, port: int = 50000, **kw: Any) -> dict[str, Any]:
    return _base(
        at(ms),
        **{
            s.ACTION_TYPE: s.SSL_INSPECTED,
            s.LOCAL_PORT: port,
            s.PROCESS_ID: 0,
            s.PROCESS_CREATION: None,
            "InitiatingProcessFileName": None,
            s.ADDITIONAL_FIELDS: f'{{"direction":"Out","server_name":"{domain}"}}',
            **kw,
        },
    )


def direct(ms: float, ip: str = "93.184.216.34", port: int = 443, **kw: Any) -> dict:
    return _base(at(ms), **{s.REMOTE_IP: ip, s.REMOTE_PORT: port, **kw})


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA)


def write_lake(root: Path, df: pl.DataFrame, hourly: bool = True) -> Path:
    """Write rows into `root/DeviceNetworkEvents/date=…/hour=…/part-0.parquet`."""
    table = root / "DeviceNetworkEvents"
    keyed = df.with_columns(
        pl.col(s.TIMESTAMP).dt.date().alias("_d"), pl.col(s.TIMESTAMP).dt.hour().alias("_h")
    )
    keys = ["_d", "_h"] if hourly else ["_d"]
    for key, part in keyed.group_by(keys):
        folder = table / f"date={key[0]}"
        if hourly:
            folder = folder / f"hour={key[1]:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        part.drop("_d", "_h").write_parquet(folder / "part-0.parquet")
    return table
