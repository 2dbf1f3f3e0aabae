"""The nightly run: one day from the raw lake to the published tables, and many days.

Its steps, in the order `run.run_day` takes them:

- `discover`: the proxies, when the configuration says `proxies: auto`;
- `plan`: which files of the lake day D needs, and which it must not read;
- `lake`: reading them into the lake's typed schema (the reader every engine uses);
- the build, by the configured engine (`jobs.engines`);
- `stage`: the built rows, written as Parquet files not yet in any table;
- `gate`: the expectations, then `publish`: one Delta commit per table, or none;
- `manifest`: the run's record (read back by `status`, `validate` and the next run), and the
  snapshot the readers pin.

`days` runs a lookback or a backfill day by day; `lock` keeps one writer per curated root;
`maintain` compacts and vacuums the tables; `status` reports what each day holds.
"""
