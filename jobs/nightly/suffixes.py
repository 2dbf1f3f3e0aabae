"""The Public Suffix List the summary tables use: the copy the `publicsuffixlist` package ships.

A run never downloads the list; upgrading the package (pinned in constraints.txt) updates it,
and the manifest records which list a run used.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata, resources

from proxylink.jobs.errors import ConfigError
from proxylink.transforms.psl import SuffixRules, parse_rules

PACKAGE = "publicsuffixlist"
DATA_FILE = "public_suffix_list.dat"


@cache
def _text() -> str:
    try:
        return (resources.files(PACKAGE) / DATA_FILE).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            f"the Public Suffix List is missing ({PACKAGE}/{DATA_FILE}: {exc}); "
            f"reinstall with `pip install -c constraints.txt -e .`"
        ) from None


@cache
def suffix_rules() -> SuffixRules:
    return parse_rules(_text())


@cache
def _digest() -> str:
    return hashlib.sha256(_text().encode("utf-8")).hexdigest()[:16]


def describe() -> dict[str, str]:
    """Which list a run used, for the manifest and the fingerprint (hashed once per process:
    `status` fingerprints every day)."""
    return {"package": f"{PACKAGE} {metadata.version(PACKAGE)}", "sha256": _digest()}
