"""Entry point for `spark-submit`: the proxylink CLI inside the driver spark-submit starts.

    spark-submit [cluster options] jobs/engines/spark_entry.py \
        run --conf spark-cluster.yaml --date D

Set `spark.master: null` in that config so the master and resources come from spark-submit.
The executors run the link core (polars) in their Python workers, so they need the same Python
environment as the driver: proxylink and its dependencies (see deploy/spark/spark-submit.sh).
"""

from __future__ import annotations

from proxylink.jobs.cli import console

if __name__ == "__main__":
    console()
