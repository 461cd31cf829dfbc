"""Resque's queue-list semantics: order is priority, globs match, ``!`` negates.

Pure logic: ``expand`` gets the known queue names from the caller.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

_GLOB_CHARS = frozenset("*?[]{}")


def parse(value: str | Sequence[str] | None) -> list[str]:
    """Split ``"critical, high,low"`` (or a list of such) into patterns, dropping blanks.

    A comma inside braces belongs to the pattern: ``"{low,high}_mail,default"`` is two
    patterns. (Ruby's ``QUEUES.split(',')`` would cut the braces apart; jobqueue keeps them,
    so ``-q '{low,high}_mail'`` means what it says.)
    """
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [p.strip() for item in items for p in _split_outside_braces(item) if p.strip()]


def _split_outside_braces(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def from_environment() -> list[str]:
    """Patterns from ``QUEUES`` or ``QUEUE``, Resque's fallback when no option is given."""
    return parse(os.environ.get("QUEUES") or os.environ.get("QUEUE"))


def is_dynamic(patterns: Sequence[str]) -> bool:
    """True when the list needs the set of known queues (a glob or a negation)."""
    return any(p.startswith("!") or _GLOB_CHARS & set(p) for p in patterns)


def _match(pattern: str, name: str) -> bool:
    if "{" in pattern and "}" in pattern:  # Ruby File.fnmatch with FNM_EXTGLOB-style braces
        head, _, rest = pattern.partition("{")
        options, _, tail = rest.partition("}")
        return any(_match(head + opt + tail, name) for opt in options.split(","))
    return fnmatchcase(name, pattern)


def expand(patterns: Sequence[str], known: Iterable[str]) -> list[str]:
    """Resolve patterns against known queue names, keeping Resque's order.

    Each positive pattern contributes, in turn, the names it matches (a literal name always,
    globs alphabetically), minus every name matched by a ``!`` pattern, without repeats.
    """
    known_sorted = sorted(set(known))
    excluded = [p[1:] for p in patterns if p.startswith("!")]
    result: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        if _GLOB_CHARS & set(pattern):
            names = [n for n in known_sorted if _match(pattern, n)]
        else:
            names = [pattern]
        for name in names:
            if name not in seen and not any(_match(ex, name) for ex in excluded):
                seen.add(name)
                result.append(name)
    return result
