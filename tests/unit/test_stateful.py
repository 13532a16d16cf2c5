"""A hypothesis state machine: the oracle against a naive shadow of libbpf's globals.

The shadow is the C code's data structures kept literally (an array of
sec_defs, a fallback slot, a counter) and searched linearly with the reference
matcher; the oracle must agree on every return value and out-parameter.  A
failure prints as a runnable program of register/unregister/lookup steps.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from oracle import Oracle
from oracle.model.reference import c_find_sec_def
from oracle.ops import INT_MAX, HandlerOpts
from oracle.tables import load_table
from tests.strategies import names, patterns

VERSION = "1.7.0"
BUILTINS = [
    (d.sec, (d.prog_type, d.expected_attach_type)) for d in load_table(VERSION).section_defs
]

opts = st.one_of(
    st.none(),
    st.builds(HandlerOpts, sz=st.sampled_from([0, 7, 8, 16, 40])),
    st.builds(HandlerOpts, sz=st.just(48), tail=st.sampled_from([b"\0" * 8, b"\0" * 7 + b"\1"])),
)


@dataclass
class Shadow:
    last_id: int = 0
    custom: list[tuple[int, bytes, tuple[int, int]]] = field(default_factory=list)
    fallback: tuple[int, tuple[int, int]] | None = None

    def register(self, sec: bytes | None, types: tuple[int, int], valid: bool) -> int:
        if not valid:
            return -errno.EINVAL
        if self.last_id == INT_MAX:
            return -errno.E2BIG
        if sec is None and self.fallback is not None:
            return -errno.EBUSY
        self.last_id += 1
        if sec is None:
            self.fallback = (self.last_id, types)
        else:
            self.custom.append((self.last_id, sec, types))
        return self.last_id

    def unregister(self, hid: int) -> int:
        if hid <= 0:
            return -errno.EINVAL
        if self.fallback is not None and self.fallback[0] == hid:
            self.fallback = None
            return 0
        for i, (cid, _, _) in enumerate(self.custom):
            if cid == hid:
                del self.custom[i]
                return 0
        return -errno.ENOENT

    def prog_type_by_name(self, name: bytes) -> tuple[int, int, int]:
        found = c_find_sec_def(
            [(sec, types) for _, sec, types in self.custom],
            BUILTINS,
            self.fallback[1] if self.fallback else None,
            name,
        )
        return (0, *found) if found else (-errno.ESRCH, 0, 0)


class RegistryMachine(RuleBasedStateMachine):
    handlers = Bundle("handlers")

    def __init__(self) -> None:
        super().__init__()
        self.oracle = Oracle(VERSION)
        self.shadow = Shadow()
        self.ids: list[int] = []

    @rule(target=handlers, sec=st.one_of(st.none(), patterns),
          prog_type=st.integers(0, 40), attach_type=st.integers(0, 60), o=opts)
    def register(self, sec: bytes | None, prog_type: int, attach_type: int,
                 o: HandlerOpts | None) -> int:
        rc = self.oracle.register_prog_handler(sec, prog_type, attach_type, o)
        valid = o is None or not (o.sz < 8 or any(o.tail[: max(0, o.sz - 40)]))
        assert rc == self.shadow.register(sec, (prog_type, attach_type), valid)
        if rc > 0:
            self.ids.append(rc)
        return rc

    @rule(hid=consumes(handlers))
    def unregister(self, hid: int) -> None:
        assert self.oracle.unregister_prog_handler(hid) == self.shadow.unregister(hid)

    @rule(hid=st.integers(-3, 50))
    def unregister_any(self, hid: int) -> None:
        assert self.oracle.unregister_prog_handler(hid) == self.shadow.unregister(hid)

    @rule(name=names)
    def lookup(self, name: bytes) -> None:
        assert self.oracle.prog_type_by_name(name) == self.shadow.prog_type_by_name(name)

    @rule(data=st.data())
    def lookup_registered(self, data: st.DataObject) -> None:
        if self.shadow.custom:
            _, sec, _ = data.draw(st.sampled_from(self.shadow.custom))
            for name in (sec, sec.rstrip(b"+"), sec + b"x", sec.rstrip(b"+") + b"/x"):
                assert self.oracle.prog_type_by_name(name) == self.shadow.prog_type_by_name(name)

    @invariant()
    def ids_unique_and_increasing(self) -> None:
        assert self.ids == sorted(set(self.ids))

    @invariant()
    def at_most_one_fallback_and_custom_in_id_order(self) -> None:
        fallback = self.oracle.registry.fallback
        assert (fallback is None) == (self.shadow.fallback is None)
        custom_ids = [h.handler_id for h in self.oracle.custom_handlers()]
        assert custom_ids == sorted(custom_ids) == [cid for cid, _, _ in self.shadow.custom]


RegistryMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                             deadline=None)
TestRegistryMachine = RegistryMachine.TestCase
