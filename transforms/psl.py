"""Public Suffix List rules as plain data, so both engines compute eTLD+1 with a join.

The registered domain (eTLD+1) of `a.b.example.co.uk` is `example.co.uk`: the public suffix
(`co.uk`, the longest matching rule) plus one label. Wildcard rules (`*.ck`) make any label
under them a suffix; exception rules (`!www.ck`) undo a wildcard for one name. Names that no
rule covers fall back to the implicit rule `*` (their last label is the suffix).

The rules include the list's private section (`github.io`, `blogspot.com`, ...), as browsers
use it: `team.github.io` and `other.github.io` are different registrants. Jobs load the text
from the `publicsuffixlist` package's copy, so nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import polars as pl

SUFFIX = "_suffix"  # a rule's name (for wildcards: the name under the `*`)
KIND = "_kind"

NORMAL = "normal"
WILDCARD = "wildcard"
EXCEPTION = "exception"


@dataclass(frozen=True)
class SuffixRules:
    """The three kinds of rule, each as the dotted name it matches (lower case, ASCII)."""

    normal: frozenset[str]
    wildcard: frozenset[str]  # `*.ck` is stored as `ck`
    exception: frozenset[str]  # `!www.ck` is stored as `www.ck`

    def __len__(self) -> int:
        return len(self.normal) + len(self.wildcard) + len(self.exception)

    def frame(self) -> pl.DataFrame:
        """One row per rule: the name it matches and its kind (engines join on the name)."""
        rows = [
            *((r, NORMAL) for r in sorted(self.normal)),
            *((r, WILDCARD) for r in sorted(self.wildcard)),
            *((r, EXCEPTION) for r in sorted(self.exception)),
        ]
        return pl.DataFrame(
            {SUFFIX: [r for r, _ in rows], KIND: [k for _, k in rows]},
            schema={SUFFIX: pl.String, KIND: pl.String},
        )


def _spellings(rule: str) -> list[str]:
    """The rule as written and, for an internationalised name, its punycode (A-label) form,
    because Defender reports host names the way the resolver saw them, usually as A-labels."""
    out = [rule]
    if not rule.isascii():
        # A label Python's IDNA 2003 codec rejects: only its Unicode form can match.
        with contextlib.suppress(UnicodeError):
            out.append(rule.encode("idna").decode("ascii"))
    return out


def parse_rules(text: str) -> SuffixRules:
    """Parse the list's text (`public_suffix_list.dat` format): one rule per line, `//` comments."""
    normal: set[str] = set()
    wildcard: set[str] = set()
    exception: set[str] = set()
    for line in text.splitlines():
        rule = line.strip().split(maxsplit=1)[0] if line.strip() else ""
        if not rule or rule.startswith("//"):
            continue
        rule = rule.lower()
        if rule.startswith("!"):
            exception.update(_spellings(rule[1:]))
        elif rule.startswith("*."):
            wildcard.update(_spellings(rule[2:]))
        else:
            normal.update(_spellings(rule))
    if not normal:
        raise ValueError("the public suffix list has no rules")
    return SuffixRules(frozenset(normal), frozenset(wildcard), frozenset(exception))
