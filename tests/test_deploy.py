"""The ready-to-use schedules parse, and the commands they run are valid proxylink commands."""

from __future__ import annotations

import configparser
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from proxylink.jobs.cli.parse import build_parser

DEPLOY = Path(__file__).parent.parent / "deploy"


def _proxylink_args(command: str) -> list[str]:
    words = shlex.split(command.split(">>")[0])
    (binary,) = [w for w in words if w.endswith("/proxylink")]
    return words[words.index(binary) + 1 :]


def _commands(line: str) -> list[list[str]]:
    """The proxylink argument lists of a shell line that chains commands with `&&`."""
    return [_proxylink_args(part) for part in line.split("&&")]


def test_cron_line_runs_a_valid_nightly_command() -> None:
    lines = [
        line
        for line in (DEPLOY / "cron" / "proxylink.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    (line,) = lines
    fields = line.split()
    minute, hour, dom, month, dow, user = fields[:6]
    assert (minute, hour, dom, month, dow, user) == ("15", "2", "*", "*", "*", "proxylink")
    run, report = (build_parser().parse_args(a) for a in _commands(" ".join(fields[6:])))
    assert run.command == "run" and run.date is None and run.lookback == 2
    assert report.command == "report" and report.date is None, "yesterday, as the run"


def test_systemd_units_parse_and_run_a_valid_command() -> None:
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(DEPLOY / "systemd" / "proxylink.service")
    assert service["Service"]["Type"] == "oneshot"
    args = build_parser().parse_args(_proxylink_args(service["Service"]["ExecStart"]))
    assert args.command == "run" and args.log_format == "json"
    after = build_parser().parse_args(_proxylink_args(service["Service"]["ExecStartPost"]))
    assert after.command == "report" and after.date is None
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(DEPLOY / "systemd" / "proxylink.timer")
    assert timer["Timer"]["OnCalendar"].endswith("02:15:00 UTC")
    assert timer["Timer"]["Persistent"] == "true"


def test_airflow_dag_loads_with_one_daily_task_and_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loaded against a stand-in for the airflow package, which is not a dependency here."""
    made: dict[str, Any] = {}

    class DAG:
        def __init__(self, **kwargs: Any) -> None:
            made["dag"] = kwargs

        def __enter__(self) -> DAG:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    class BashOperator:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs, self.downstream = kwargs, []
            made.setdefault("tasks", []).append(self)

        def __rshift__(self, other: BashOperator) -> BashOperator:
            self.downstream.append(other)
            return other

    airflow = types.ModuleType("airflow")
    airflow.DAG = DAG  # type: ignore[attr-defined]
    operators = types.ModuleType("airflow.operators")
    bash = types.ModuleType("airflow.operators.bash")
    bash.BashOperator = BashOperator  # type: ignore[attr-defined]
    for name, module in {
        "airflow": airflow,
        "airflow.operators": operators,
        "airflow.operators.bash": bash,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    source = (DEPLOY / "airflow" / "proxylink_dag.py").read_text()
    exec(compile(source, "proxylink_dag.py", "exec"), {"__name__": "proxylink_dag"})

    dag = made["dag"]
    assert dag["catchup"] is True and dag["max_active_runs"] == 1
    assert dag["default_args"]["retries"] >= 1
    build, report = made["tasks"]
    assert build.downstream == [report], "the report follows the day's build"
    for task, command_name in ((build, "run"), (report, "report")):
        command = task.kwargs["bash_command"]
        assert "--date {{ ds }}" in command, "the date comes from the logical date"
        filled = command.replace("{{ ds }}", "2026-11-01")
        args = build_parser().parse_args(_proxylink_args(filled))
        assert args.command == command_name and str(args.date) == "2026-11-01"
