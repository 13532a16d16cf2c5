"""The packaged conformance tests (``oracle.conformance.test_conformance``), run by the suite.

``pytest --libbpf TARGET`` here runs the same tests as ``pytest --pyargs
oracle.conformance --libbpf TARGET`` from an installed package.
"""

from __future__ import annotations

from oracle.conformance.test_conformance import (  # noqa: F401 (collected by pytest)
    pytestmark,
    test_corpus_replays_live,
    test_short_campaign_finds_nothing_unexplained,
)
