"""The custom handler registry: ids, custom list, the one fallback, unregister.

Follows libbpf.c ``libbpf_register_prog_handler`` and
``libbpf_unregister_prog_handler`` (the same rules in 1.1.2 through 1.7.0) and
their global state::

    static struct bpf_sec_def *custom_sec_defs;   static size_t custom_sec_def_cnt;
    static struct bpf_sec_def custom_fallback_def; static bool has_custom_fallback_def;
    static int last_custom_sec_def_handler_id;

Spec: "Non-negative handler ID is returned on success. This handler ID has to be
passed to libbpf_unregister_prog_handler() [...]. Negative error code is
returned on error."  "if `sec` is `NULL`, custom handler is registered for any
BPF program that doesn't match [...]. There could be only one such generic
custom handler registered at any given time."

Rules, as transitions (``REGISTER_CHECKS`` lists the register
failure checks in libbpf's order; the first that applies decides):

register(sec, prog_type, exp_attach_type, opts):
  1. ``!OPTS_VALID(opts)``                         -> -EINVAL  (state unchanged)
  2. ``last_custom_sec_def_handler_id == INT_MAX``  -> -E2BIG   (state unchanged)
  3. ``sec == NULL`` and a fallback exists          -> -EBUSY   (state unchanged)
  4. otherwise: id = ++last; sec != NULL appends to the custom list (duplicates
     of an existing pattern allowed: the earlier one keeps matching first);
     sec == NULL becomes the fallback.  prog_type and exp_attach_type are
     stored as given, never validated.
unregister(handler_id):
  1. ``handler_id <= 0``                            -> -EINVAL
  2. the fallback's id                              -> 0, fallback cleared
  3. an id in the custom list                       -> 0, removed; the rest keep order
  4. otherwise                                      -> -ENOENT

Invariants:
- ids are handed out by one counter: the first is ``last_handler_id + 1`` (1 on a
  fresh process), each success takes the next, failures take none, ids are
  never reused (the counter never goes back, even after unregister);
- at most one fallback; custom handlers are kept in registration order, which
  is also id order.

Not modelled: -ENOMEM (allocation failure).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from oracle.model.matching import FirstMatchIndex
from oracle.model.opts import EffectiveOpts, effective_opts, opts_valid
from oracle.ops import INT_MAX, HandlerOpts


@dataclass(frozen=True, slots=True)
class Handler:
    """One registered custom handler (a ``struct bpf_sec_def`` in ``custom_sec_defs``)."""

    handler_id: int
    sec: bytes | None  # None: the fallback
    prog_type: int
    expected_attach_type: int
    opts: EffectiveOpts
    #: index of the ``Register`` op that made it (``HandleRef`` numbering), -1 if unknown
    registration: int = -1


@dataclass(frozen=True, slots=True)
class RegisterCall:
    """The arguments of one ``libbpf_register_prog_handler`` call, as C sees them."""

    sec: bytes | None
    prog_type: int
    exp_attach_type: int
    opts: HandlerOpts | None
    #: index of the ``Register`` op in its sequence (``HandleRef`` numbering), -1 if unknown
    registration: int = -1


class Registry:
    """libbpf's process-global handler registry (see module rules)."""

    __slots__ = ("_by_id", "_custom", "fallback", "last_handler_id", "rejects_empty_sec")

    def __init__(self, last_handler_id: int = 0, *, rejects_empty_sec: bool = False) -> None:
        if not 0 <= last_handler_id <= INT_MAX:
            raise ValueError(f"last_handler_id {last_handler_id} is not in 0..INT_MAX")
        self.last_handler_id = last_handler_id
        #: KB1's fix (``Profile.rejects_empty_sec``): ``sec == ""`` is -EINVAL
        self.rejects_empty_sec = rejects_empty_sec
        self.fallback: Handler | None = None
        self._custom: FirstMatchIndex[Handler] = FirstMatchIndex()
        self._by_id: dict[int, Handler] = {}  # insertion order == registration order

    # -- queries --------------------------------------------------------------

    def custom_handlers(self) -> tuple[Handler, ...]:
        """The custom list in matching order (registration order)."""
        return tuple(self._by_id.values())

    def first_custom(self, name: bytes) -> Handler | None:
        """The first custom handler (not the fallback) whose pattern matches ``name``."""
        return self._custom.first(name)

    # -- transitions ----------------------------------------------------------

    def register(self, call: RegisterCall) -> int:
        """``libbpf_register_prog_handler``: a new id, or the first failing check's -errno."""
        for check in REGISTER_CHECKS:
            err = check(self, call)
            if err:
                return -err
        self.last_handler_id += 1
        handler = Handler(  # handler_id, sec, prog_type, expected_attach_type, opts, registration
            self.last_handler_id, call.sec, call.prog_type, call.exp_attach_type,
            effective_opts(call.opts), call.registration,
        )
        if call.sec is None:
            self.fallback = handler
        else:
            self._custom.add(handler.handler_id, call.sec, handler)
            self._by_id[handler.handler_id] = handler
        return handler.handler_id

    def unregister(self, handler_id: int) -> int:
        """``libbpf_unregister_prog_handler``: 0, -EINVAL or -ENOENT."""
        if handler_id <= 0:
            return -errno.EINVAL
        if self.fallback is not None and self.fallback.handler_id == handler_id:
            self.fallback = None
            return 0
        handler = self._by_id.pop(handler_id, None)
        if handler is None:
            return -errno.ENOENT
        assert handler.sec is not None
        self._custom.remove(handler_id, handler.sec)
        return 0


def invalid_opts(registry: Registry, call: RegisterCall) -> int:
    """Check 1: ``if (!OPTS_VALID(opts, libbpf_prog_handler_opts)) return -EINVAL``."""
    return 0 if opts_valid(call.opts) else errno.EINVAL


def ids_exhausted(registry: Registry, call: RegisterCall) -> int:
    """Check 2: ``if (last_custom_sec_def_handler_id == INT_MAX) return -E2BIG``."""
    return errno.E2BIG if registry.last_handler_id == INT_MAX else 0


def fallback_taken(registry: Registry, call: RegisterCall) -> int:
    """Check 3: ``sec == NULL`` while ``has_custom_fallback_def`` -> -EBUSY."""
    return errno.EBUSY if call.sec is None and registry.fallback is not None else 0


def empty_sec(registry: Registry, call: RegisterCall) -> int:
    """KB1's fix, where a build has it: ``sec == ""`` -> -EINVAL (the spec's forms
    all have a stem; no release checks it, docs/known-bugs.md KB1)."""
    return errno.EINVAL if registry.rejects_empty_sec and call.sec == b"" else 0


REGISTER_CHECKS: Final[tuple[Callable[[Registry, RegisterCall], int], ...]] = (
    invalid_opts,
    empty_sec,
    ids_exhausted,
    fallback_taken,
)
