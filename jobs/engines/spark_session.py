"""The Spark session of a run: built from settings, always in UTC, with a clear error without Java.

Spark 4 needs Java 17. Without it (or with an older Java) pyspark's JVM exits at start-up and
pyspark raises `PySparkRuntimeError` with the condition `JAVA_GATEWAY_EXITED`; a run says what
to install instead of showing that.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# pyspark warns that it does not fully support pandas 3; the Spark runner runs no pandas code.
warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)

from pyspark.errors import PySparkRuntimeError  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

from proxylink.transforms.engine import EngineUnavailable  # noqa: E402

# Settings the runner relies on; a run refuses other values. Spark only moves rows the polars
# core has typed (as Arrow IPC), so none of its SQL semantics matter but the clock.
REQUIRED_OPTIONS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
}

# Defaults a deployment may override.
DEFAULT_OPTIONS: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    # Each task links with polars; one polars thread per task core keeps executors from
    # running more threads than they have cores (spark.task.cpus cores per task).
    "spark.executorEnv.POLARS_MAX_THREADS": "1",
}

LOG4J = Path(__file__).with_name("spark-log4j2.properties")

JAVA_HINT = (
    "the Spark engine needs Java 17: install openjdk-17-jre-headless "
    "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME to a Java 17 runtime"
)


@dataclass(frozen=True)
class SparkSettings:
    """Where and how Spark runs. `master` None leaves it to spark-submit (a cluster run)."""

    master: str | None = "local[*]"
    app_name: str = "proxylink"
    options: Mapping[str, str] = field(default_factory=dict)


def session_options(settings: SparkSettings) -> dict[str, str]:
    """Defaults, then the settings' `spark.*` options, then the options the engine requires."""
    for key, value in settings.options.items():
        if not key.startswith("spark."):
            raise ValueError(f"Spark option {key!r} must start with 'spark.'")
        need = REQUIRED_OPTIONS.get(key)
        if need is not None and str(value) != need:
            raise ValueError(f"Spark option {key} must be {need} (got {value})")
    options = {**DEFAULT_OPTIONS, **{k: str(v) for k, v in settings.options.items()}}
    if "spark.executorEnv.POLARS_MAX_THREADS" not in settings.options:
        options["spark.executorEnv.POLARS_MAX_THREADS"] = options.get("spark.task.cpus", "1")
    return {**options, **REQUIRED_OPTIONS}


def build_session(settings: SparkSettings | None = None) -> SparkSession:
    """Start (or join) the session; EngineUnavailable names the missing Java."""
    settings = settings or SparkSettings()
    local = settings.master is not None and settings.master.startswith("local")
    if local and "PYSPARK_PYTHON" not in os.environ:
        # Local Python workers run this interpreter, whose environment has proxylink (pyspark
        # would start `python3` from PATH). On a cluster, spark-submit's environment says.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    options = session_options(settings)
    if local and not any("log4j" in v for k, v in options.items() if "JavaOptions" in k):
        java = options.get("spark.driver.extraJavaOptions", "")
        options["spark.driver.extraJavaOptions"] = f"{java} -Dlog4j2.configurationFile={LOG4J}"
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master is not None:
        builder = builder.master(settings.master)
    for key, value in options.items():
        builder = builder.config(key, value)

    try:
        session = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        if _condition(exc) == "JAVA_GATEWAY_EXITED":
            raise EngineUnavailable(f"{JAVA_HINT} ({describe_java()})") from None
        raise
    except FileNotFoundError as exc:  # no `java` executable at all on some platforms
        raise EngineUnavailable(f"{JAVA_HINT} ({exc})") from None
    if logging.getLogger("proxylink").isEnabledFor(logging.DEBUG):
        session.sparkContext.setLogLevel("INFO")
    return session


def _condition(exc: PySparkRuntimeError) -> str | None:
    get = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    return get() if get is not None else None


def describe_java() -> str:
    """Which Java pyspark would start, and its version, for the error message."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if java is None or not os.path.exists(java):
        where = f"JAVA_HOME={home}" if home else "PATH"
        return f"no java found via {where}"
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{java} does not run: {exc}"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return f"found {java}: {lines[0] if lines else 'no version output'}"
