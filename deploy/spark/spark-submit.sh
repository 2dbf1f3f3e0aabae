#!/usr/bin/env bash
# Nightly proxylink on a Spark cluster, in client mode from an edge node where proxylink is
# installed (the driver needs the project; executors run no Python code).
# Usage: deploy/spark/spark-submit.sh [extra proxylink run flags, e.g. --date 2026-11-01]
# Environment: PROXYLINK_HOME (checkout with .venv), PROXYLINK_CONF (a config with
# spark.master: null), SPARK_MASTER (yarn, k8s://https://..., spark://...).
set -euo pipefail
home="${PROXYLINK_HOME:-/opt/proxylink}"
conf="${PROXYLINK_CONF:-$home/conf/spark-cluster.yaml}"
export PATH="$home/.venv/bin:$PATH"   # spark-submit finds pyspark through this python
export PYSPARK_PYTHON="$home/.venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$home/.venv/bin/python"
exec "$home/.venv/bin/spark-submit" \
  --master "${SPARK_MASTER:-yarn}" \
  --deploy-mode client \
  --name proxylink-nightly \
  --conf spark.executor.memory="${EXECUTOR_MEMORY:-8g}" \
  --conf spark.executor.cores="${EXECUTOR_CORES:-4}" \
  --conf spark.dynamicAllocation.enabled=true \
  "$home/jobs/spark_entry.py" --log-format json run --conf "$conf" --lookback 2 "$@"
