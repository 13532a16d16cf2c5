"""Shared ``Answer`` values for the model's hot paths.

Rules:
- ``answer(rc, out)`` is ``Answer(rc, out)`` (no callback calls): equal
  arguments give one shared object.  ``Answer`` is immutable and compared by
  value, so sharing is invisible to callers; it saves a frozen-dataclass
  construction on the ops whose answers recur (``0``, ``-ENOENT``, a lookup's
  types), most of a campaign's.
- At most ``CACHE_SIZE`` distinct answers are kept; when full it starts again
  (answers with ever-new values, such as handler ids, never grow it unbounded).
- Pure: no I/O, nothing from outside ``oracle.model`` and ``oracle.ops``.
"""

from __future__ import annotations

from typing import Final

from oracle.ops import Answer, OutValue

CACHE_SIZE: Final = 4096
_answers: dict[tuple[int, tuple[OutValue, ...]], Answer] = {}


def answer(rc: int, out: tuple[OutValue, ...] = ()) -> Answer:
    """``Answer(rc, out)``, shared with every equal one (see module rules)."""
    key = (rc, out)
    found = _answers.get(key)
    if found is None:
        found = Answer(rc, out)
        if len(_answers) >= CACHE_SIZE:
            _answers.clear()
        _answers[key] = found
    return found
