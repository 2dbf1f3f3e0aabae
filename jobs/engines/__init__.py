"""The engines' I/O: how a day's rows reach the one link core and its results come back.

`runner` is the interface the nightly run asks for by name, and the polars runner (one
process). `spark_run` (the driver) and `spark_tasks` (inside the tasks) read, shuffle by device
and build each device partition with the same polars core; `spark_session` starts the session
and `spark_entry` is the script `spark-submit` runs.
"""
