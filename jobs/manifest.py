"""The run manifest: what a run read, decided and published, as one JSON file per run.

Schedulers and auditors read it instead of logs: inputs with sizes and times, counts that
reconcile, link statistics, durations per step and the versions that produced the output.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs.errors import OutputError


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("proxylink", "polars", "pyarrow", "deltalake", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def manifest_path(curated: Path, day: str, run_id: str) -> Path:
    return curated / "_manifests" / f"date={day}" / f"{run_id}.json"


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a manifest."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"cannot write manifest {path}: {exc.strerror or exc}") from None
