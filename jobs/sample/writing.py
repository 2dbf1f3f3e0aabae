"""Writing: the truth tables and the hour files of the lake, in the shapes other writers use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from proxylink.jobs.sample.codes import (
    ACTIONS,
    DAY_US,
    EMPTY,
    HOUR_US,
    NULL,
    PORT_ABC,
    PROCESS_NAMES,
    PROTOCOLS,
    R_BAD,
    R_DIRECT,
    R_LEG,
    R_NP,
    ROLES,
    TS_TYPE,
    Array,
    Rng,
)
from proxylink.jobs.sample.events import Events
from proxylink.jobs.sample.spec import Rates, Shapes
from proxylink.jobs.sample.world import World
from proxylink.transforms import schema as s


def _take(table: pa.Array, idx: Array) -> pa.Array:
    """Strings by table index; negative indices give null."""
    return table.take(pa.array(idx, mask=idx < 0))


def write_truth_connections(
    path: Path, world: World, c: dict[str, Array], ev: Events, blocks: dict[str, Array]
) -> None:
    """One row per true connection, with the key of the row that must represent it."""
    n = len(c["dev"])
    rep_row = np.full(n, NULL, dtype=np.int64)
    rep_role = np.full(n, NULL, dtype=np.int32)
    for role, code in (("np", R_NP), ("leg", R_LEG), ("direct", R_DIRECT)):  # leg wins over np
        first, ids = int(blocks[role][0]), blocks[role][1:]
        rep_row[ids] = first + np.arange(len(ids))
        rep_role[ids] = code
    has = rep_row >= 0
    safe = np.where(has, rep_row, 0)
    rep_ts = ev.ts[safe]
    domain = np.where(c["proxied"], world.dom_url[c["dom"]], c["direct_url"])
    domain = np.where(domain == EMPTY, NULL, domain)
    table = pa.table(
        {
            "conn_id": pa.array(np.arange(n, dtype=np.int64)),
            s.DEVICE_ID: _take(world.device_ids, c["dev"] + 1),
            "kind": pa.array(np.where(c["proxied"], "proxied", "direct")),
            "domain": _take(world.urls, domain),
            "target_port": pa.array(c["target_port"], type=pa.int32()),
            "leg_present": pa.array(c["leg_present"]),
            "np_present": pa.array(c["np_present"]),
            "http_present": pa.array(c["http_present"]),
            "ssl_present": pa.array(c["ssl_present"]),
            "np_portless": pa.array(c["np_portless"]),
            "np_shape2": pa.array(c["np_shape2"]),
            "np_target_portless": pa.array(c["np_target_portless"]),
            "np_throttled": pa.array(c["np_throttled"]),
            "plain_http": pa.array(c["plain"]),
            "keepalive": pa.array(c["keepalive"]),
            "mapped": pa.array(world.dev_mapped[c["dev"]]),
            "port_pool": pa.array(world.dev_pool[c["dev"]]),
            "sensor_skewed": pa.array(world.dev_skew[c["dev"]] != 0),
            "burst_id": pa.array(c["burst"], type=pa.int64()),
            "burst_size": pa.array(c["burst_size"], type=pa.int32()),
            "rep_Timestamp": pa.array(rep_ts, mask=~has, type=TS_TYPE),
            "rep_ReportId": pa.array(ev.rid[safe], mask=~has, type=pa.int64()),
            "rep_role": _take(pa.array(ROLES), rep_role),
            "rep_date": pa.array(rep_ts // DAY_US, mask=~has, type=pa.int32()).cast(pa.date32()),
        }
    )
    pq.write_table(table, path, compression="zstd")


def write_lake(
    rng: Rng,
    root: Path,
    truth_events: Path,
    world: World,
    ev: Events,
    string_hours: Array,
    shapes: Shapes,
    rates: Rates,
    say: Callable[[str], None],
) -> tuple[int, int]:
    """Write one file per hour from one time-sorted index, and the events truth alongside.

    Each hour's file is written by one of several writers (`_writer`); some hours are exported
    a second time by Log Analytics (`_log_analytics`), repeating some of their events."""
    n = len(ev.ts)
    candidates = np.flatnonzero(ev.role != R_BAD)
    dups = rng.choice(candidates, round(rates.exact_duplicates * n), replace=False)
    rows = np.concatenate([np.arange(n), dups])
    copy = np.concatenate([np.zeros(n, dtype=bool), np.ones(len(dups), dtype=bool)])
    order = np.argsort(ev.ts[rows], kind="stable")
    rows, copy = rows[order], copy[order]
    hour = ev.ts[rows] // HOUR_US
    bounds = np.flatnonzero(np.diff(hour)) + 1
    starts = np.concatenate([[0], bounds]) if len(rows) else bounds
    ends = np.concatenate([bounds, [len(rows)]]) if len(rows) else bounds
    string_set = set(string_hours.tolist())
    actions = pa.array(ACTIONS)
    roles = pa.array(ROLES)
    truth_schema = pa.schema(
        [
            (s.DEVICE_ID, pa.string()),
            (s.TIMESTAMP, TS_TYPE),
            (s.REPORT_ID, pa.int64()),
            (s.ACTION_TYPE, pa.string()),
            ("conn_id", pa.int64()),
            ("role", pa.string()),
        ]
    )
    with pq.ParquetWriter(truth_events, truth_schema, compression="zstd") as writer:
        for i, (lo, hi) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            h = int(hour[lo])
            when = dt.datetime.fromtimestamp(h * 3600, tz=dt.UTC)
            folder = root / f"date={when:%Y-%m-%d}" / f"hour={when:%H}"
            folder.mkdir(parents=True, exist_ok=True)
            idx = rows[lo:hi]
            writer_of = "string_ports" if h in string_set else _writer(rng, shapes)
            table = _hour_table(world, ev, idx, actions, writer=writer_of)
            pq.write_table(table, folder / "part-0.parquet", compression="zstd")
            if rng.random() < shapes.log_analytics:
                again = idx[(ev.role[idx] != R_BAD) & (rng.random(len(idx)) < 0.05)]
                again_table = _log_analytics(_hour_table(world, ev, again, actions))
                pq.write_table(again_table, folder / "part-1.parquet", compression="zstd")
            first = idx[~copy[lo:hi]]
            writer.write_table(
                pa.table(
                    {
                        s.DEVICE_ID: _take(world.device_ids, _device_id_codes(ev, first)),
                        s.TIMESTAMP: pa.array(ev.ts[first], type=TS_TYPE),
                        s.REPORT_ID: pa.array(ev.rid[first], type=pa.int64()),
                        s.ACTION_TYPE: actions.take(pa.array(ev.act[first])),
                        "conn_id": pa.array(ev.conn[first], mask=ev.conn[first] < 0),
                        "role": roles.take(pa.array(ev.role[first])),
                    },
                    schema=truth_schema,
                )
            )
            if (i + 1) % 12 == 0:
                say(f"hour files: {i + 1}/{len(starts)}")
    return len(rows), len(starts)


def _device_id_codes(ev: Events, idx: Array) -> Array:
    """DeviceId table codes, null for the rows that deliberately lack one."""
    return np.where(ev.devid_null[idx], NULL, ev.dev[idx] + 1)


def _mixed(codes: Array, mix: Array) -> Array:
    """Blank a string now and then, as null or as "", the way real exports do."""
    return np.where(mix == 1, NULL, np.where(mix == 2, EMPTY, codes))


# How an hour file was written: the common writer, or one of the others real lakes mix in.
WRITERS: Final = ("int64_ports", "ns_timestamps", "kusto_text", "fewer_columns")


def _writer(rng: Rng, shapes: Shapes) -> str:
    """The writer of one hour file: another than the common one at the schema-drift rate."""
    if rng.random() >= shapes.schema_drift:
        return "common"
    return str(WRITERS[int(rng.integers(0, len(WRITERS)))])


def _hour_table(
    world: World, ev: Events, idx: Array, actions: pa.Array, *, writer: str = "common"
) -> pa.Table:
    """Materialise the rows of one hour file with the advanced-hunting columns, typed as
    `writer` types them: text ports (`string_ports`, where the "abc" rows live), int64 ports,
    nanosecond timestamps, Kusto's text timestamps, or no InitiatingProcessAccountName."""
    dev = ev.dev[idx]
    proc = ev.proc[idx]
    has_proc = proc >= 0
    p = np.where(has_proc, proc, 0)
    rport: pa.Array = pa.array(ev.rport[idx], type=pa.int32())
    lport_codes = ev.lport[idx]
    lport: pa.Array = pa.array(lport_codes, mask=lport_codes < 0, type=pa.int32())
    if writer == "string_ports":
        rport = rport.cast(pa.string())
        lport = pc.if_else(pa.array(lport_codes == PORT_ABC), "abc", lport.cast(pa.string()))
    elif writer == "int64_ports":
        rport, lport = rport.cast(pa.int64()), lport.cast(pa.int64())
    names = pa.array(PROCESS_NAMES)
    # Process events of a device with IPv4-mapped sockets show ::ffff:a.b.c.d.
    mapped = pa.array(has_proc & world.dev_mapped[dev])
    remote_ip = pc.if_else(
        mapped, _take(world.mapped_ips, ev.rip[idx]), _take(world.ips, ev.rip[idx])
    )
    table = pa.table(
        {
            s.TIMESTAMP: pa.array(ev.ts[idx], type=TS_TYPE),
            s.DEVICE_ID: _take(world.device_ids, _device_id_codes(ev, idx)),
            s.DEVICE_NAME: _take(world.device_names, _mixed(dev + 1, ev.name_mix[idx])),
            s.ACTION_TYPE: actions.take(pa.array(ev.act[idx])),
            s.REMOTE_IP: remote_ip,
            s.REMOTE_PORT: rport,
            s.REMOTE_URL: _take(world.urls, ev.url[idx]),
            s.LOCAL_IP: _take(world.ips, world.dev_ip[dev]),
            s.LOCAL_PORT: lport,
            s.PROTOCOL: pa.array(PROTOCOLS).take(pa.array(ev.proto[idx])),
            s.PROCESS_ID: pa.array(np.where(has_proc, world.proc_pid[p], 0), type=pa.int64()),
            s.PROCESS_CREATION: pa.array(world.proc_created[p], mask=~has_proc, type=TS_TYPE),
            s.PROCESS_FILE_NAME: _take(names, np.where(has_proc, world.proc_name[p], NULL)),
            "InitiatingProcessAccountName": _take(
                world.accounts,
                np.where(has_proc, _mixed(world.proc_account[p], ev.account_mix[idx]), NULL),
            ),
            s.REPORT_ID: pa.array(ev.rid[idx], type=pa.int64()),
            s.ADDITIONAL_FIELDS: _take(world.afs, ev.af[idx]),
        }
    )
    stamps = [s.TIMESTAMP, s.PROCESS_CREATION]
    if writer == "ns_timestamps":
        for name in stamps:
            column = table[name].cast(pa.timestamp("ns", tz="UTC"))
            table = table.set_column(table.schema.get_field_index(name), name, column)
    elif writer == "kusto_text":
        for name in stamps:
            text = pc.strftime(table[name], format=KUSTO_TIME, locale="C")
            table = table.set_column(table.schema.get_field_index(name), name, text)
    elif writer == "fewer_columns":
        table = table.drop_columns(["InitiatingProcessAccountName"])
    return table


LOG_ANALYTICS_COLUMNS: Final = ("TenantId", "SourceSystem", "MachineGroup", "TimeGenerated", "Type")

# Kusto's text timestamps: seven fractional digits and Z (Arrow's %S of a µs timestamp gives six).
KUSTO_TIME: Final = "%Y-%m-%dT%H:%M:%S0Z"


def _log_analytics(table: pa.Table) -> pa.Table:
    """The same events as Log Analytics exports them: its own columns added, one optional
    column fewer, and JSON text spaced otherwise."""
    n = table.num_rows
    generated = pc.add(table[s.TIMESTAMP], pa.scalar(dt.timedelta(minutes=3)))
    spaced = pc.replace_substring(table[s.ADDITIONAL_FIELDS], pattern='","', replacement='", "')
    table = table.drop_columns([s.PROCESS_FILE_NAME])
    table = table.set_column(
        table.schema.get_field_index(s.ADDITIONAL_FIELDS), s.ADDITIONAL_FIELDS, spaced
    )
    extra = {
        "TenantId": pa.array(["72f988bf-86f1-41af-91ab-2d7cd011db47"] * n),
        "SourceSystem": pa.array([""] * n),
        "MachineGroup": pa.array(["Workstations"] * n),
        "TimeGenerated": pc.strftime(generated, format=KUSTO_TIME, locale="C"),
        "Type": pa.array(["DeviceNetworkEvents"] * n),
    }
    for name in LOG_ANALYTICS_COLUMNS:
        table = table.append_column(name, extra[name])
    return table
