"""`python -m proxylink.jobs.cli`: the same as the `proxylink` console script."""

from __future__ import annotations

import sys

from proxylink.jobs.cli import main

sys.exit(main())
