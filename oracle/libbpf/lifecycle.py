"""The object lifecycle ops on real libbpf: ``Open`` .. ``Close`` for ``child.DISPATCH``.

Each function is ``(session, op) -> (rc, out)`` like the child's own; the
callback calls libbpf makes meanwhile are recorded by the binding
(``Libbpf.calls``).

Rules (the harness conventions of ``oracle.ops``, applied before libbpf is
called, exactly as ``oracle.model.objects`` applies them):
- ``session.objects[n]`` is what the n-th ``Open`` of this process returned:
  ``(obj, programs)`` with the programs in ``bpf_object__next_program``
  order, or None once the open failed or the object was closed -> ``NO_OBJECT``.
- A program index out of range -> ``NO_PROGRAM``.
- ``Load``/``Attach`` when bpf() is not permitted (``bpf_permitted``, probed
  once per process) -> ``NO_BPF``, libbpf not called.  Setting
  ``SEC_ORACLE_NO_BPF=1`` in the worker's environment forces that mode (tests).
- ``Attach``: a link that libbpf does return is destroyed at once
  (``bpf_link__destroy``); the answer is then 0.

Invariant: an object's ELF buffer lives as long as the object (``Libbpf.open_mem``
keeps it until ``close``).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from oracle.bpfelf import RETURN_0, ObjectSpec, build_object
from oracle.errors import BadArgumentError
from oracle.ops import (
    NO_BPF,
    NO_OBJECT,
    NO_PROGRAM,
    OUT_ARITY,
    Attach,
    Close,
    Load,
    ObjRef,
    Open,
    OutValue,
    ProgInfo,
    SetAutoload,
    SetType,
    as_u32,
    check_obj_ref,
)

if TYPE_CHECKING:
    from oracle.libbpf.child import Session

Result = tuple[int, tuple[OutValue, ...]]

SYS_BPF: Final = 321  # x86-64 (the binding refuses other machines)
BPF_PROG_LOAD: Final = 5
BPF_PROG_TYPE_SOCKET_FILTER: Final = 1
NO_BPF_ENV: Final = "SEC_ORACLE_NO_BPF"


@functools.cache
def bpf_permitted() -> bool:
    """Whether this process may load a BPF program: one ``BPF_PROG_LOAD`` of a socket filter.

    EPERM, EACCES or ENOSYS mean no; any other answer (a program, EINVAL...)
    means the syscall itself is usable.
    """
    if os.environ.get(NO_BPF_ENV) == "1":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(RETURN_0)
    license_ = ctypes.create_string_buffer(b"GPL")
    head = struct.pack("<IIQQ", BPF_PROG_TYPE_SOCKET_FILTER, len(RETURN_0) // 8,
                       ctypes.addressof(insns), ctypes.addressof(license_))
    attr = ctypes.create_string_buffer(head.ljust(128, b"\0"), 128)
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, attr, 128)
    if fd >= 0:
        os.close(fd)
        return True
    return ctypes.get_errno() not in (errno.EPERM, errno.EACCES, errno.ENOSYS)


def _object(session: Session, ref: ObjRef) -> tuple[Any, list[Any]] | None:
    """``(obj, programs)`` an ``ObjRef`` names, None if it is not open."""
    entry: tuple[Any, list[Any]] | None = session.objects[check_obj_ref(ref, len(session.objects))]
    return entry


def _program(session: Session, op: ProgInfo | SetType | SetAutoload | Attach) -> Any | Result:
    """The program an op names, or the convention's answer when there is none."""
    entry = _object(session, op.obj)
    none = (None,) * OUT_ARITY[type(op)]
    if entry is None:
        return NO_OBJECT, none
    programs = entry[1]
    if not 0 <= op.prog < len(programs):
        return NO_PROGRAM, none
    return programs[op.prog]


def open_object(session: Session, op: Open) -> Result:
    """``bpf_object__open_mem`` of the built (or raw) object; out: number of programs."""
    if isinstance(op.obj, ObjectSpec):
        data = build_object(op.obj)
    elif isinstance(op.obj, bytes | bytearray):
        data = bytes(op.obj)
    else:
        raise BadArgumentError(f"Open needs an ObjectSpec or bytes, not {op.obj!r}")
    session.objects.append(None)
    obj, err = session.lib.open_mem(data)
    if err:
        return err, (None,)
    programs = session.lib.programs(obj)
    session.objects[-1] = (obj, programs)
    return 0, (len(programs),)


def prog_info(session: Session, op: ProgInfo) -> Result:
    """The getters: name, section_name, type, expected_attach_type, autoload (0/1)."""
    prog = _program(session, op)
    if isinstance(prog, tuple):
        return prog
    lib = session.lib
    return 0, (lib.prog_name(prog), lib.prog_section(prog), lib.prog_type(prog),
               lib.prog_expected_attach_type(prog), int(lib.prog_autoload(prog)))


def set_type(session: Session, op: SetType) -> Result:
    """``bpf_program__set_type``."""
    prog = _program(session, op)
    if isinstance(prog, tuple):
        return prog
    return session.lib.prog_set_type(prog, as_u32(op.prog_type, "prog_type")), ()


def set_autoload(session: Session, op: SetAutoload) -> Result:
    """``bpf_program__set_autoload``."""
    prog = _program(session, op)
    if isinstance(prog, tuple):
        return prog
    return session.lib.prog_set_autoload(prog, bool(op.autoload)), ()


def load(session: Session, op: Load) -> Result:
    """``bpf_object__load`` (``NO_BPF`` without bpf())."""
    if not bpf_permitted():
        return NO_BPF, ()
    entry = _object(session, op.obj)
    if entry is None:
        return NO_OBJECT, ()
    return session.lib.load(entry[0]), ()


def attach(session: Session, op: Attach) -> Result:
    """``bpf_program__attach``; a link it returns is destroyed at once."""
    if not bpf_permitted():
        return NO_BPF, ()
    prog = _program(session, op)
    if isinstance(prog, tuple):
        return prog
    link, err = session.lib.attach(prog)
    if err:
        return err, ()
    session.lib.link_destroy(link)
    return 0, ()


def close(session: Session, op: Close) -> Result:
    """``bpf_object__close``; the object's slot becomes None."""
    entry = _object(session, op.obj)
    if entry is None:
        return NO_OBJECT, ()
    session.lib.close(entry[0])
    session.objects[op.obj.index] = None
    return 0, ()


#: the entries ``child.DISPATCH`` takes from this module
DISPATCH: Final[dict[type, Callable[[Session, Any], Result]]] = {
    Open: open_object,
    ProgInfo: prog_info,
    SetType: set_type,
    SetAutoload: set_autoload,
    Load: load,
    Attach: attach,
    Close: close,
}
