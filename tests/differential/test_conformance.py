"""The conformance corpus and a short campaign against real libbpf (``pytest --libbpf TARGET``).

For each target, the recorded corpus of the release it reports
(corpus/traces/<version>/) is replayed live and must conform, and a short
``check`` campaign must find nothing unexplained.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oracle.campaign.check import CheckConfig, exit_status, run_check
from oracle.replay import replay
from tests.targets import version_or_skip

pytestmark = pytest.mark.libbpf

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "traces"



def test_corpus_replays_live(libbpf_target: str) -> None:
    version = version_or_skip(libbpf_target)
    traces = sorted((CORPUS / version).glob("*.jsonl"))
    assert traces, f"no recorded corpus for libbpf {version}"
    result = replay(traces, libbpf=libbpf_target)
    bad = [t for t in result.traces if t.status != "conforms"]
    assert not bad, [(t.path, t.error or t.crash or t.divergences[:1]) for t in bad]


def test_short_campaign_finds_nothing_unexplained(libbpf_target: str, tmp_path: Path) -> None:
    version_or_skip(libbpf_target)
    config = CheckConfig(libbpf=libbpf_target, seconds=None, cases=300, seed=7,
                         findings=tmp_path / "findings")
    _, stats = run_check(config)
    unexplained = [f.signature for f in stats.findings.values() if f.known is None]
    assert exit_status(stats, strict=False) == 0, unexplained
