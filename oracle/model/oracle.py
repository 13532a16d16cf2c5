"""``Oracle``: the public model, one method per libbpf function it mirrors.

Rules:
- One ``Oracle`` is one libbpf process: its registry starts empty (or with the
  id counter at ``last_handler_id``) and only changes through
  ``register_prog_handler`` / ``unregister_prog_handler``.
- Arguments are checked and converted once, at this boundary, to what C sees
  (``oracle.ops.as_c_string``/``as_u32``/``as_c_int``, ``opts.coerce_opts``);
  a wrong type raises ``BadArgumentError``, an unknown release
  ``UnknownVersionError``.  Return values are libbpf's, negative errno on error.
- Out-parameters libbpf leaves untouched on error are returned as 0 by the
  tuple-returning methods (documented on each); ``apply`` reports them as None.
- ``apply(op)`` runs one op of the op language; ``HandleRef(n)`` resolves to
  what this oracle's n-th ``Register`` returned, ``ObjRef(n)`` to the object
  its n-th ``Open`` made (``oracle.model.objects``).  ``bpf=False`` models a
  process that may not call bpf(): ``Load``/``Attach`` answer ``NO_BPF``.
"""

from __future__ import annotations

from collections.abc import Iterable

from oracle.errors import BadArgumentError
from oracle.model import lookup
from oracle.model.answers import answer
from oracle.model.objects import Objects
from oracle.model.opts import coerce_opts
from oracle.model.registry import Handler, RegisterCall, Registry
from oracle.model.versions import Profile, as_profile
from oracle.ops import (
    INT_MAX,
    LIFECYCLE_OPS,
    Answer,
    AttachTypeByName,
    Fault,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
    as_c_int,
    as_c_string,
    as_u32,
    resolve_handler,
)


class Oracle:
    """The model of one libbpf release's handler registry and name lookups."""

    def __init__(self, model: str | Profile, *, last_handler_id: int = 0,
                 bpf: bool = True) -> None:
        if not isinstance(model, str | Profile):
            raise BadArgumentError(
                f"model must be a release like '1.7.0' or a Profile, not {model!r}")
        if isinstance(last_handler_id, bool) or not isinstance(last_handler_id, int):
            raise BadArgumentError("last_handler_id must be an int")
        if not 0 <= last_handler_id <= INT_MAX:
            raise BadArgumentError(f"last_handler_id {last_handler_id} is not in 0..INT_MAX")
        self.release: Profile = as_profile(model)
        self.registry = Registry(last_handler_id,
                                 rejects_empty_sec=self.release.rejects_empty_sec)
        self._register_results: list[int] = []
        #: the objects ``Open`` ops made; ``bpf=False`` mirrors a worker without bpf()
        self.objects = Objects(self.registry, self.release, bpf=bpf)

    @property
    def version(self) -> str:
        return self.release.version

    # -- the C API, one to one -------------------------------------------------

    def register_prog_handler(
        self, sec: object, prog_type: object, exp_attach_type: object, opts: object = None
    ) -> int:
        """``libbpf_register_prog_handler``: a handler id (> 0) or -errno.

        ``sec``: str, bytes or None (NULL, the fallback).  ``opts``: None, a
        ``HandlerOpts`` or the raw bytes of ``struct libbpf_prog_handler_opts``.
        """
        call = RegisterCall(  # sec, prog_type, exp_attach_type, opts, registration
            as_c_string(sec, "sec"),
            as_u32(prog_type, "prog_type"),
            as_u32(exp_attach_type, "exp_attach_type"),
            coerce_opts(opts),
            len(self._register_results),
        )
        rc = self.registry.register(call)
        self._register_results.append(rc)
        return rc

    def unregister_prog_handler(self, handler_id: object) -> int:
        """``libbpf_unregister_prog_handler``: 0, -EINVAL or -ENOENT."""
        return self.registry.unregister(as_c_int(handler_id, "handler_id"))

    def prog_type_by_name(self, name: object) -> tuple[int, int, int]:
        """``libbpf_prog_type_by_name``: (rc, prog_type, expected_attach_type).

        On error libbpf leaves both out-parameters untouched; they read as 0 here.
        """
        answer = lookup.prog_type_by_name(self.registry, self.release, as_c_string(name, "name"))
        prog_type, attach_type = answer.out
        return answer.rc, int(prog_type or 0), int(attach_type or 0)

    def attach_type_by_name(self, name: object) -> tuple[int, int]:
        """``libbpf_attach_type_by_name``: (rc, attach_type); untouched on error, read as 0."""
        answer = lookup.attach_type_by_name(self.registry, self.release, as_c_string(name, "name"))
        return answer.rc, int(answer.out[0] or 0)

    def find_sec_def(self, name: object) -> lookup.Match | None:
        """Which handler (custom, built-in ``SecDef`` or fallback) a name selects."""
        as_name = as_c_string(name, "name")
        if as_name is None:
            raise BadArgumentError("find_sec_def needs a name, not None")
        return lookup.find_sec_def(self.registry, self.release, as_name)

    def custom_handlers(self) -> tuple[Handler, ...]:
        return self.registry.custom_handlers()

    # -- the op language --------------------------------------------------------

    def apply(self, op: Op) -> Answer:
        """Run one op; see ``oracle.ops`` for the answer's shape."""
        kind = type(op)
        if kind is ProgTypeByName:  # the most frequent ops first, by exact type
            assert isinstance(op, ProgTypeByName)
            return lookup.prog_type_by_name(self.registry, self.release, op.name)
        if kind is Register:
            assert isinstance(op, Register)
            rc = self.register_prog_handler(op.sec, op.prog_type, op.exp_attach_type, op.opts)
            return Answer(rc) if rc > 0 else answer(rc)  # ids never recur: not shared
        if kind is Unregister:
            assert isinstance(op, Unregister)
            return answer(self.registry.unregister(resolve_handler(op, self._register_results)))
        if kind is AttachTypeByName:
            assert isinstance(op, AttachTypeByName)
            return lookup.attach_type_by_name(self.registry, self.release, op.name)
        if kind in LIFECYCLE_OPS:
            return self.objects.apply(op)  # type: ignore[arg-type]
        if kind is Fault:
            raise BadArgumentError("Fault ops are test-only: the oracle does not model them")
        raise BadArgumentError(f"not an op of the op language: {op!r}")

    def run(self, ops: Iterable[Op]) -> list[Answer]:
        return [self.apply(op) for op in ops]
