"""SEC() pattern forms and the first-match index over them.

Follows libbpf.c ``sec_def_matches()`` (identical in 1.1.2, 1.4.6, 1.5.0, 1.7.0)::

    size_t len = strlen(sec_def->sec);
    if (sec_def->sec[len - 1] == '/')          /* "type/" */
            return str_has_pfx(sec_name, sec_def->sec);
    if (sec_def->sec[len - 1] == '+') {        /* "type+" */
            len--;
            if (strncmp(sec_name, sec_def->sec, len) != 0) return false;
            return sec_name[len] == '\\0' || sec_name[len] == '/';
    }
    return strcmp(sec_name, sec_def->sec) == 0;  /* plain */

and the spec's Usage clauses:

- "if `sec` is just a plain string (e.g., "abc"), it will match only `SEC("abc")`"
  -> ``Form.PLAIN``: equality.
- "if `sec` is of the form "abc/", proper `SEC()` form is `SEC("abc/something")`"
  -> ``Form.SLASH``: the name starts with the whole pattern, ``"abc/"``
  included; libbpf accepts an empty "something" (docs/divergences.md, D3).
- "if `sec` is of the form "abc+", it will successfully match both `SEC("abc")`
  and `SEC("abc/whatever")` forms" -> ``Form.PLUS``: equality with the stem, or
  the stem followed by ``/``.

Only the last character decides the form, so ``"a+/"`` is SLASH and ``"a/+"``
is PLUS with stem ``"a/"``.  The empty pattern ``""`` makes libbpf read
``sec[-1]`` (out of bounds; a real libbpf bug, docs/known-bugs.md); without a
sanitizer that byte is a malloc header byte, in practice neither '/' nor '+',
so the model treats ``""`` as PLAIN (matching only the empty name).

Key observation behind the index: every match is either "name == E" for an
exact key E, or "name starts with P" for a prefix key P that *ends in '/'*.  So
the candidate prefixes of a name are exactly ``name[:i + 1]`` for each ``/`` at
position i, and a lookup is a handful of dict probes, never a scan of the
patterns (``MatchKeys``, ``FirstMatchIndex``).

Invariants of ``FirstMatchIndex``:
- entries are ordered by their rank (registration order for custom handlers,
  table index for built-ins); ``first(name)`` returns the lowest-ranked entry
  whose pattern matches, exactly as the linear scan in ``find_sec_def`` does;
- adding an entry requires a rank above every rank present (appending, as
  ``libbpf_register_prog_handler`` does); removing keeps the others' order.
- ``memo=True`` (the built-in tables, which never change after they are built)
  keeps up to ``MEMO_SIZE`` answers of ``first`` by name; ``add`` and
  ``remove`` forget them.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

SLASH = ord("/")
MEMO_SIZE = 8192
PLUS = ord("+")


class Form(enum.Enum):
    """The three non-NULL ``sec`` forms of the spec's Usage section."""

    PLAIN = "plain"
    SLASH = "slash"
    PLUS = "plus"


def pattern_form(pattern: bytes) -> Form:
    """The form libbpf gives ``pattern``: decided by its last character alone."""
    if pattern.endswith(b"/"):
        return Form.SLASH
    if pattern.endswith(b"+"):
        return Form.PLUS
    return Form.PLAIN


def pattern_matches(pattern: bytes, name: bytes) -> bool:
    """``sec_def_matches(pattern, name)``: the reference semantics, one pattern at a time."""
    form = pattern_form(pattern)
    if form is Form.SLASH:
        return name.startswith(pattern)
    if form is Form.PLUS:
        stem = pattern[:-1]
        return name == stem or name.startswith(stem + b"/")
    return name == pattern


@dataclass(frozen=True, slots=True)
class MatchKeys:
    """A pattern's match set as dict keys: ``exact`` names and one '/'-ended ``prefix``."""

    exact: bytes | None
    prefix: bytes | None


@functools.lru_cache(maxsize=4096)  # patterns recur: a campaign registers a few stems
def match_keys(pattern: bytes) -> MatchKeys:
    """Translate a pattern into the keys ``FirstMatchIndex`` probes."""
    form = pattern_form(pattern)
    if form is Form.SLASH:
        return MatchKeys(exact=None, prefix=pattern)
    if form is Form.PLUS:
        stem = pattern[:-1]
        return MatchKeys(exact=stem, prefix=stem + b"/")
    return MatchKeys(exact=pattern, prefix=None)


def candidate_keys(name: bytes) -> Iterator[bytes]:
    """Every key that can select an entry for ``name``: itself, then each '/'-ended prefix."""
    yield name
    find = name.find
    pos = find(b"/")
    while pos >= 0:
        yield name[: pos + 1]
        pos = find(b"/", pos + 1)


T = TypeVar("T")


class FirstMatchIndex(Generic[T]):
    """Entries with patterns, answering "which is the first to match this name?".

    Each key maps to the ranks of the entries it selects, lowest first.  A
    lookup probes the name's candidate keys and takes the smallest rank found.
    """

    __slots__ = ("_entries", "_exact", "_longest", "_memo", "_prefix", "_top")

    def __init__(self, *, memo: bool = False) -> None:
        #: name -> answer of ``first`` (None: no memo kept)
        self._memo: dict[bytes, T | None] | None = {} if memo else None
        self._exact: dict[bytes, list[int]] = {}
        self._prefix: dict[bytes, list[int]] = {}
        self._entries: dict[int, T] = {}
        self._top: int | None = None  # the highest rank ever added
        #: no prefix key is longer: a lookup probes only the name's prefixes up to it,
        #: so it is linear in the name, not quadratic (many '/' in a long name)
        self._longest = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, rank: int, pattern: bytes, entry: T) -> None:
        """Append an entry; ``rank`` must exceed every rank already present."""
        if self._top is not None and rank <= self._top:
            raise ValueError(f"rank {rank} does not come after rank {self._top}")
        self._top = rank
        self._entries[rank] = entry
        if self._memo:
            self._memo.clear()
        keys = match_keys(pattern)
        if keys.exact is not None:
            self._exact.setdefault(keys.exact, []).append(rank)
        if keys.prefix is not None:
            self._prefix.setdefault(keys.prefix, []).append(rank)
            self._longest = max(self._longest, len(keys.prefix))

    def remove(self, rank: int, pattern: bytes) -> None:
        """Drop the entry of ``rank``; the others keep their order."""
        del self._entries[rank]
        if self._memo:
            self._memo.clear()
        keys = match_keys(pattern)
        for table, key in ((self._exact, keys.exact), (self._prefix, keys.prefix)):
            if key is None:
                continue
            ranks = table[key]
            ranks.remove(rank)
            if not ranks:
                del table[key]

    def first(self, name: bytes) -> T | None:
        """The lowest-ranked entry whose pattern matches ``name``, or None."""
        memo = self._memo
        if memo is None:
            return self._first(name)
        if name in memo:
            return memo[name]
        found = self._first(name)
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[name] = found
        return found

    def _first(self, name: bytes) -> T | None:
        best: int | None = None
        ranks = self._exact.get(name)
        if ranks:
            best = ranks[0]
        prefix = self._prefix
        if prefix:
            longest = self._longest
            pos = name.find(b"/", 0, longest)
            while pos >= 0:
                ranks = prefix.get(name[: pos + 1])
                if ranks and (best is None or ranks[0] < best):
                    best = ranks[0]
                pos = name.find(b"/", pos + 1, longest)
        return None if best is None else self._entries[best]

    @classmethod
    def of(cls, items: Iterable[tuple[bytes, T]], *, memo: bool = False) -> FirstMatchIndex[T]:
        """An index of ``(pattern, entry)`` pairs ranked in the order given."""
        index: FirstMatchIndex[T] = cls(memo=memo)
        for rank, (pattern, entry) in enumerate(items):
            index.add(rank, pattern, entry)
        return index
