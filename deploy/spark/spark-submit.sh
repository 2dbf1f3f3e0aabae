#!/usr/bin/env bash
# Nightly proxylink on a Spark cluster, in client mode from an edge node where proxylink is
# installed. The driver and every executor run Python with proxylink installed: the tasks link
# with polars. See docs/spark.md for YARN (a packed virtualenv), Kubernetes (an image) and
# Databricks (the wheel as a cluster library).
# Usage: deploy/spark/spark-submit.sh [extra proxylink run flags, e.g. --date 2026-11-01]
# Environment:
#   PROXYLINK_HOME     checkout with .venv (default /opt/proxylink)
#   PROXYLINK_CONF     a config with spark.master: null (default conf/spark-cluster.yaml)
#   SPARK_MASTER       yarn, k8s://https://..., spark://host:7077 (default yarn)
#   EXECUTOR_PYTHON    the executors' Python (default: this venv's, for executors that share
#                      the edge node's file system; on YARN: ./environment/bin/python with
#                      SPARK_ARCHIVES=proxylink-env.tar.gz#environment)
#   SPARK_ARCHIVES     archives to ship to the executors (--archives), e.g. a venv-pack file
#   EXECUTOR_MEMORY, EXECUTOR_CORES, EXECUTOR_MEMORY_OVERHEAD, DYNAMIC_ALLOCATION (true|false)
set -euo pipefail
home="${PROXYLINK_HOME:-/opt/proxylink}"
conf="${PROXYLINK_CONF:-$home/conf/spark-cluster.yaml}"
export PATH="$home/.venv/bin:$PATH"   # spark-submit finds pyspark through this python
export PYSPARK_DRIVER_PYTHON="$home/.venv/bin/python"
export PYSPARK_PYTHON="${EXECUTOR_PYTHON:-$home/.venv/bin/python}"
args=()
if [ -n "${SPARK_ARCHIVES:-}" ]; then
  args+=(--archives "$SPARK_ARCHIVES")
fi
exec "$home/.venv/bin/spark-submit" \
  --master "${SPARK_MASTER:-yarn}" \
  --deploy-mode client \
  --name proxylink-nightly \
  "${args[@]}" \
  --conf spark.pyspark.python="$PYSPARK_PYTHON" \
  --conf spark.executor.memory="${EXECUTOR_MEMORY:-2g}" \
  --conf spark.executor.cores="${EXECUTOR_CORES:-4}" \
  --conf spark.executor.memoryOverhead="${EXECUTOR_MEMORY_OVERHEAD:-6g}" \
  --conf spark.executorEnv.POLARS_MAX_THREADS=1 \
  --conf spark.dynamicAllocation.enabled="${DYNAMIC_ALLOCATION:-true}" \
  --conf spark.dynamicAllocation.shuffleTracking.enabled=true \
  "$home/jobs/engines/spark_entry.py" --log-format json run --conf "$conf" --lookback 2 "$@"
