"""The `proxylink` command: what humans and schedulers run.

The CLI is the only place that prints. Every expected failure ends in one line on stderr and an
exit code from `jobs.errors`; a traceback is shown only with --debug.

- `parse`: the commands, their options and the checks on their values;
- `commands`: what each command does;
- `render`: how results are shown.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Sequence

from proxylink.jobs import logs
from proxylink.jobs.cli.commands import COMMANDS
from proxylink.jobs.cli.parse import build_parser
from proxylink.jobs.cli.render import error
from proxylink.jobs.errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, ProxylinkError, printable
from proxylink.transforms.engine import EngineUnavailable

__all__ = ["console", "main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, which systemd, Airflow and Kubernetes send to stop a job: unwound like Ctrl-C,
    so that staged files are removed and the lock released, and exit 143 (128 + 15)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def console() -> None:
    """The `proxylink` console script: `main`, then the exit.

    Before the exit every object is frozen out of the garbage collector: the interpreter's last
    collections would otherwise walk all the objects a run made (great-expectations leaves
    hundreds of thousands), 0.6 s of a 19 s bench run. Everything that must be closed, flushed
    or removed is by then; in-process callers of `main` keep their collector as it is."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every outcome is an exit code from `jobs.errors`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_format, args.debug)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return COMMANDS[args.command](args)
    except ProxylinkError as exc:
        error(str(exc))
        return exc.exit_code
    except EngineUnavailable as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print("proxylink: interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `proxylink sql ... | head` closed the pipe: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"proxylink: internal error: {type(exc).__name__}: {printable(first)} "
            "(rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
