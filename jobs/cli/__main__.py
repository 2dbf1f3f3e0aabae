"""`python -m proxylink.jobs.cli`: the same as the `proxylink` console script."""

from __future__ import annotations

from proxylink.jobs.cli import console

console()
