"""Hypothesis strategies for section names and handler patterns, shared by the tests.

Names and patterns are drawn from a small alphabet rich in the characters the
matching rules care about ('/', '+', '.', '?'), from built-in table stems, and
from arbitrary bytes without NUL, so collisions between patterns and names are
common rather than astronomically rare.
"""

from __future__ import annotations

from hypothesis import strategies as st

from oracle.tables import load_table

STEMS = sorted(
    {d.sec.rstrip(b"+/") for d in load_table("1.7.0").section_defs}
    | {d.sec for d in load_table("1.1.2").section_defs}
)

_pieces = st.sampled_from([b"a", b"b", b"ab", b"/", b"+", b".", b"?", b"s", b"x/y"])

short_bytes = st.lists(_pieces, max_size=6).map(b"".join)
stem_based = st.tuples(st.sampled_from(STEMS), short_bytes).map(lambda t: t[0] + t[1])
raw_bytes = st.binary(max_size=12).map(lambda b: b.replace(b"\0", b""))

names = st.one_of(short_bytes, stem_based, raw_bytes)
patterns = st.one_of(
    short_bytes,
    stem_based,
    st.tuples(short_bytes, st.sampled_from([b"", b"/", b"+"])).map(lambda t: t[0] + t[1]),
)
