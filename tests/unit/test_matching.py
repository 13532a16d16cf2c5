"""The three SEC forms, and the fast index against the naive reference matcher."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracle.model.matching import (
    FirstMatchIndex,
    Form,
    candidate_keys,
    pattern_form,
    pattern_matches,
)
from oracle.model.reference import c_find_sec_def, c_sec_def_matches
from tests.strategies import names, patterns

CASES = [
    # (pattern, name, matches)  -- spec "Usage" clauses and sec_def_matches()
    (b"abc", b"abc", True),
    (b"abc", b"abc/whatever", False),  # plain: only SEC("abc")
    (b"abc", b"abcd", False),
    (b"abc/", b"abc/something", True),
    (b"abc/", b"abc/", True),  # empty "something" is accepted (divergence D3)
    (b"abc/", b"abc", False),
    (b"abc+", b"abc", True),
    (b"abc+", b"abc/whatever", True),
    (b"abc+", b"abc/", True),
    (b"abc+", b"abcd", False),
    (b"abc+", b"ab", False),
    (b"a/+", b"a/", True),  # PLUS with stem "a/"
    (b"a/+", b"a//x", True),
    (b"a/+", b"a/x", False),
    (b"a+/", b"a+/x", True),  # SLASH: the whole pattern is the prefix
    (b"+", b"", True),
    (b"+", b"/x", True),
    (b"/", b"/", True),
    (b"", b"", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), CASES)
def test_pattern_forms(pattern: bytes, name: bytes, expected: bool) -> None:
    assert pattern_matches(pattern, name) is expected
    assert c_sec_def_matches(pattern, name) is expected


def test_form_is_decided_by_the_last_character() -> None:
    assert pattern_form(b"abc") is Form.PLAIN
    assert pattern_form(b"abc/") is Form.SLASH
    assert pattern_form(b"abc+") is Form.PLUS
    assert pattern_form(b"a+/") is Form.SLASH
    assert pattern_form(b"") is Form.PLAIN


def test_candidate_keys_are_the_name_and_its_slash_prefixes() -> None:
    assert list(candidate_keys(b"a/b//c")) == [b"a/b//c", b"a/", b"a/b/", b"a/b//"]


@given(patterns, names)
def test_pattern_matches_agrees_with_c(pattern: bytes, name: bytes) -> None:
    assert pattern_matches(pattern, name) == c_sec_def_matches(pattern, name)


@given(st.lists(patterns, max_size=12), st.lists(names, min_size=1, max_size=8))
def test_index_agrees_with_reference(pats: list[bytes], probe: list[bytes]) -> None:
    index = FirstMatchIndex.of((p, i) for i, p in enumerate(pats))
    listed = [(p, i) for i, p in enumerate(pats)]
    for name in probe + pats:
        assert index.first(name) == c_find_sec_def(listed, [], None, name)


@given(st.lists(patterns, min_size=1, max_size=10), st.data())
def test_index_agrees_after_removals(pats: list[bytes], data: st.DataObject) -> None:
    index = FirstMatchIndex.of((p, i) for i, p in enumerate(pats))
    alive = dict(enumerate(pats))
    for rank in data.draw(st.lists(st.sampled_from(sorted(alive)), unique=True)):
        index.remove(rank, alive.pop(rank))
    listed = [(p, i) for i, p in sorted(alive.items())]
    for name in [*data.draw(st.lists(names, max_size=6)), *pats]:
        assert index.first(name) == c_find_sec_def(listed, [], None, name)


def test_ranks_must_increase() -> None:
    index: FirstMatchIndex[str] = FirstMatchIndex()
    index.add(5, b"a", "x")
    with pytest.raises(ValueError):
        index.add(5, b"b", "y")


def test_long_names_probe_only_prefixes_as_long_as_a_key() -> None:
    # names with thousands of '/' beyond the longest prefix key: the lookup stops probing
    # there (it was quadratic in the name's length) and answers as the reference does
    patterns = [b"a/b/", b"a+", b"x/", b"a/b/y/"]
    index = FirstMatchIndex.of([(p, p) for p in patterns])
    tail = b"/y" * 5000
    names = [b"a/b/" + tail, b"a/c" + tail, b"a" + tail, b"x" + tail, b"a/b" + tail, b"b" + tail]

    def reference(name: bytes) -> bytes | None:
        return next((p for p in patterns if pattern_matches(p, name)), None)

    assert [index.first(n) for n in names] == [reference(n) for n in names]
    assert index.first(b"a/b/" + tail) == b"a/b/"
    index.remove(0, b"a/b/")
    patterns.remove(b"a/b/")
    assert [index.first(n) for n in names] == [reference(n) for n in names]
