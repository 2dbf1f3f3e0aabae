"""Apache Airflow DAG: one proxylink run per day, the date taken from the run's logical date,
then that day's HTML report.

Copy this file into the DAGs folder of an Airflow 2.4+ deployment where `proxylink` is
installed (set PROXYLINK_BIN and PROXYLINK_CONF in the environment or edit the defaults).
With catchup, Airflow backfills past days one task per day; `max_active_runs=1` keeps one
writer at a time (proxylink's lock would otherwise make the second exit with code 4, which is
retried). Exit codes: 0 ok or skipped, 1 validation failed, 2 config, 3 input problem, 4 lock.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

PROXYLINK = os.environ.get("PROXYLINK_BIN", "/opt/proxylink/.venv/bin/proxylink")
CONF = os.environ.get("PROXYLINK_CONF", "/etc/proxylink/local.yaml")

with DAG(
    dag_id="proxylink_nightly",
    description="Link proxy legs to their real destinations and publish connection_success",
    schedule="15 2 * * *",  # after the day's Defender export has landed
    start_date=datetime(2026, 11, 1),
    catchup=True,
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=20),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=4),
    },
    tags=["security", "defender", "proxylink"],
) as dag:
    build = BashOperator(
        task_id="build_day",
        # {{ ds }} is the logical date: the day the interval covers, i.e. the day to build.
        bash_command=f"{PROXYLINK} --log-format json run --conf {CONF} --date {{{{ ds }}}}",
    )
    report = BashOperator(
        task_id="report_day",
        # The day's HTML report next to its validation report (<curated>/_reports/daily/).
        bash_command=f"{PROXYLINK} --log-format json report --conf {CONF} --date {{{{ ds }}}}",
        retries=1,
    )
    build >> report
