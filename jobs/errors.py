"""Errors a run can end with, each with the exit code a scheduler acts on.

0 success, 1 validation failed, 2 usage or configuration, 3 input problem, 4 lock held,
70 an internal error (a bug: please report it).
"""

from __future__ import annotations

import re
from typing import Any


class ProxylinkError(Exception):
    """An expected failure with a one-line message for humans."""

    exit_code = 1


class ConfigError(ProxylinkError):
    exit_code = 2


class InputError(ProxylinkError):
    exit_code = 3


class ValidationFailed(ProxylinkError):
    """A critical expectation failed, or the validation could not run; `validation` says which."""

    exit_code = 1

    def __init__(self, message: str, validation: Any = None) -> None:
        super().__init__(message)
        self.validation = validation


class LockHeld(ProxylinkError):
    """Another run holds the curated root's lock."""

    exit_code = 4


class OutputError(ProxylinkError):
    """The curated root cannot be written; published data is left as it was."""

    exit_code = 1


EXIT_OK = 0
EXIT_VALIDATION = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_LOCKED = 4
EXIT_INTERNAL = 70


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control bytes escaped (`\\x00`), so that a value from the data cannot hide
    or rewrite what a terminal shows. Line breaks and tabs stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
