"""Where the shipped corpus (``corpus/``) is: the one place its location is decided.

Rules:
- In a checkout it is the repository's ``corpus/``, beside ``oracle/``; in an
  installed wheel it is package data, ``oracle/corpus/`` (pyproject.toml maps
  ``corpus/`` to the package ``oracle.corpus``): the known findings, the
  recorded traces per release (``traces/<version>/``), the regression traces
  (``traces/regressions/``) and the fuzz seeds.
- Paths below it are named here once (``CORPUS``, ``TRACES``, ``REGRESSIONS``,
  ``FUZZ_SEEDS``, ``REGRESSION_SEEDS``); code elsewhere imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

_HERE: Final = Path(__file__).resolve().parent


def _corpus_root() -> Path:
    checkout = _HERE.parent / "corpus"
    if (checkout / "known-findings.json").is_file():
        return checkout
    return _HERE / "corpus"  # installed: package data


CORPUS: Final = _corpus_root()
#: recorded conformance corpus: ``TRACES / <version> / *.jsonl``
TRACES: Final = CORPUS / "traces"
#: confirmed findings turned regression cases (``sec-oracle corpus add``): the model's answers
REGRESSIONS: Final = TRACES / "regressions"
#: the fuzzer's generated seeds (``python -m fuzz.gen_corpus``): ``FUZZ_SEEDS / <harness>``
FUZZ_SEEDS: Final = CORPUS / "fuzz"
#: seeds of regression cases (``sec-oracle corpus add``), not generated: ``<harness>/<slug>``
REGRESSION_SEEDS: Final = CORPUS / "fuzz-regressions"


def recorded_traces(version: str) -> list[Path]:
    """The recorded conformance corpus of release ``version`` (sorted; may be empty)."""
    return sorted((TRACES / version).glob("*.jsonl"))
