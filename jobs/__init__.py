"""The jobs: everything with side effects (files, clock, configuration, processes).

- `cli`: the `proxylink` command;
- `nightly`: one day from the raw lake to the published tables, and many days;
- `engines`: how the rows reach the link core, in one process (polars) or on Spark;
- `ingest`: Defender Streaming API exports into the lake;
- `serving`: SQL, exports, DDL and the report over the published tables;
- `sample`: the generator of sample lakes with known truth;
- `config`, `errors`, `logs`, `timing`: what all of them share.

The computation itself is in `transforms/`, as pure functions from frames to frames.
"""
