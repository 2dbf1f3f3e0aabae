"""Serving: how analysts and BI tools read the published tables.

`tables` opens them at the last complete publish (the snapshot); `query` is `proxylink sql`
(read-only DuckDB); `export` writes or refreshes a DuckDB file for BI tools; `ddl` and
`column_docs` describe the tables for SQL engines and metastores; `report` (with `report_html`)
is the day's HTML report.
"""
