"""The Spark session of a run: built from settings, always in UTC, with a clear error without Java.

Spark 4 needs Java 17. Without it (or with an older Java) pyspark's JVM exits at start-up and
pyspark raises `PySparkRuntimeError` with the condition `JAVA_GATEWAY_EXITED`; a run says what
to install instead of showing that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from transforms.engine import EngineUnavailable

# Settings the engine's semantics rely on; a run refuses other values.
REQUIRED_OPTIONS: dict[str, str] = {
    # rejected rows and raw shadows spell timestamps in the session time zone
    "spark.sql.session.timeZone": "UTC",
    # Delta readers expect microsecond timestamps, not Spark's default INT96
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # read nanosecond timestamps (pandas writes them) as longs; the reader converts them
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # JSON that repeats a key parses, as it does for polars
    "spark.sql.variant.allowDuplicateKeys": "true",
}

# Defaults a deployment may override.
DEFAULT_OPTIONS: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.skewJoin.enabled": "true",
}

JAVA_HINT = (
    "the Spark engine needs Java 17: install openjdk-17-jre-headless "
    "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME to a Java 17 runtime"
)


@dataclass(frozen=True)
class SparkSettings:
    """Where and how Spark runs. `master` None leaves it to spark-submit (a cluster run).

    `checkpoint_dir` (a reliable file system on a cluster) makes the engine's intermediate
    frames survive the loss of an executor; without it they are local checkpoints.
    """

    master: str | None = "local[*]"
    app_name: str = "proxylink"
    options: Mapping[str, str] = field(default_factory=dict)
    checkpoint_dir: str | None = None


def session_options(settings: SparkSettings) -> dict[str, str]:
    """Defaults, then the settings' `spark.*` options, then the options the engine requires."""
    for key, value in settings.options.items():
        if not key.startswith("spark."):
            raise ValueError(f"Spark option {key!r} must start with 'spark.'")
        need = REQUIRED_OPTIONS.get(key)
        if need is not None and str(value) != need:
            raise ValueError(f"Spark option {key} must be {need} (got {value})")
    return {
        **DEFAULT_OPTIONS,
        **{k: str(v) for k, v in settings.options.items()},
        **REQUIRED_OPTIONS,
    }


def build_session(settings: SparkSettings | None = None) -> SparkSession:
    """Start (or join) the session; EngineUnavailable names the missing Java."""
    settings = settings or SparkSettings()
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master is not None:
        builder = builder.master(settings.master)
    for key, value in session_options(settings).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        if _condition(exc) == "JAVA_GATEWAY_EXITED":
            raise EngineUnavailable(f"{JAVA_HINT} ({describe_java()})") from None
        raise
    except FileNotFoundError as exc:  # no `java` executable at all on some platforms
        raise EngineUnavailable(f"{JAVA_HINT} ({exc})") from None
    if settings.checkpoint_dir is not None:
        session.sparkContext.setCheckpointDir(settings.checkpoint_dir)
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
