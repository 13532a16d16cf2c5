"""Trace files: writing them atomically, reading them streamed and validated.

``write_trace`` (temp file, fsync, rename) and ``TraceReader`` (header on
open, then records by iteration, every bad input a one-line ``TraceError``
naming the file and line).

Rules:
- A reader holds one line at a time and refuses, naming the file, the line
  and the limit, a line longer than ``MAX_LINE_BYTES`` (it reads at most one
  byte past it) or nested deeper than ``MAX_DEPTH``; so memory and stack stay
  bounded whatever the file holds (``/dev/zero``, one huge line, ``[[[[``...).
- A reader opens only regular files unless ``allow_special`` (a FIFO, a
  device, ``/dev/stdin``): it looks without blocking first, so a FIFO with no
  writer is refused instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from oracle.errors import TraceError
from oracle.ops import HandleRef, ObjRef, Open, Register, Unregister
from oracle.outputs import check_output_file, temp_beside
from oracle.traces.codecs import JSON, _Semantic, _Shape, json_path
from oracle.traces.kinds import CACHE_LIMIT, KIND_BY_CLASS, _decode_record, encode_record
from oracle.traces.records import MAX_DEPTH, MAX_LINE_BYTES, Record, Trace, TraceHeader
from oracle.traces.schema import decode_header, encode_header

# ---------------------------------------------------------------------------
# writing


def dump_line(obj: JSON) -> str:
    return json.dumps(obj, ensure_ascii=True) + "\n"


def iter_lines(header: TraceHeader, records: Iterable[Record]) -> Iterator[str]:
    """The trace's lines, handles numbered as the module rules say."""
    yield dump_line(encode_header(header))
    counts = {Register: 0, Open: 0}
    for record in records:
        cls = type(record.op)
        if cls in counts:
            yield dump_line(encode_record(record, counts[cls]))
            counts[cls] += 1
        else:
            yield dump_line(encode_record(record))


def write_trace(path: str | os.PathLike[str], header: TraceHeader,
                records: Iterable[Record]) -> Path:
    """Write a trace atomically (temp file + fsync + rename); returns the path.

    ``path`` must be new or a regular file (``oracle.outputs``: an ``OracleError``
    otherwise); the file gets the user's umask.  An ``OSError`` (a full disk)
    propagates, with no temp file left."""
    target = Path(path)
    check_output_file(target, "trace")
    fd, tmp = temp_beside(target)
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
            f.writelines(iter_lines(header, records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


# ---------------------------------------------------------------------------
# reading


_DECODER: Final = json.JSONDecoder()


def _parse_json(raw: bytes) -> JSON:
    """``json.loads`` of one line (ending in a newline), minus its per-call overhead."""
    text = raw.decode("utf-8")
    obj, end = _DECODER.raw_decode(text)
    if end != len(text) - 1 and text[end:].strip():
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


def _depth(obj: JSON) -> int:
    """How deep arrays and objects nest in ``obj`` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if type(value) is dict else value if type(value) is list else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


_KINDS: Final = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                 (stat.S_ISSOCK, "a socket"))


def _open(path: Path, allow_special: bool) -> IO[bytes]:
    """``path`` open for reading; a non-regular file only if ``allow_special`` (module rules)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        if stat.S_ISDIR(mode) or not allow_special:
            raise TraceError(f"{path}: {kind}, not a regular file" + (
                "" if stat.S_ISDIR(mode) else " (replay reads one with --allow-special)"))
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    try:  # asked for: open it as it is meant to be read (a FIFO waits for its writer)
        return open(path, "rb")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None


class TraceReader:
    """Streams one trace: ``header`` on open, then records by iteration.

    ``lineno`` is the line of the record last yielded (1-based; the header
    is line 1).  Iterate once; use as a context manager.  ``allow_special``:
    read a FIFO or a device too (module rules).
    """

    def __init__(self, path: str | os.PathLike[str], *, allow_special: bool = False) -> None:
        self.path = Path(path)
        self.lineno = 0
        self._file = _open(self.path, allow_special)
        try:
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def error(self, what: str, line: int | None = None) -> TraceError:
        return TraceError(f"{self.path}: line {line or self.lineno}: {what}")

    def _readline(self) -> bytes:
        try:
            return self._file.readline(MAX_LINE_BYTES + 1)
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot read: {exc.strerror or exc}") from None

    def _read_header(self) -> TraceHeader:
        raw = self._readline()
        self.lineno = 1
        if not raw:
            raise TraceError(f"{self.path}: empty file (no header line)")
        obj = self._parse(raw)
        try:
            return decode_header(obj)
        except TraceError as exc:
            raise self.error(str(exc)) from None

    def _parse(self, raw: bytes) -> JSON:
        if len(raw) > MAX_LINE_BYTES:
            raise self.error(f"line longer than the limit of {MAX_LINE_BYTES} bytes"
                             " (MAX_LINE_BYTES)")
        if not raw.endswith(b"\n"):
            raise self.error("truncated last line (no final newline): the write was cut off")
        if not raw.strip():
            raise self.error("empty line")
        try:
            obj = _parse_json(raw)
        except UnicodeDecodeError as exc:
            raise self.error(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        except ValueError as exc:
            raise self.error(f"not JSON: {exc}") from None
        except RecursionError:  # deeper than the decoder's own stack allows
            raise self._too_deep() from None
        # only a line with more brackets than the limit can nest past it
        if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(obj) > MAX_DEPTH:
            raise self._too_deep()
        return obj

    def _too_deep(self) -> TraceError:
        return self.error(f"JSON nested deeper than the limit of {MAX_DEPTH} (MAX_DEPTH)")

    def __iter__(self) -> Iterator[Record]:
        if self.lineno != 1:
            raise TraceError(f"{self.path}: a TraceReader's records can be read only once")
        cache: dict[bytes, Record] = {}
        counts = {Register: 0, Open: 0}  # records of each handle-carrying kind so far
        lineno = self.lineno
        readline = self._readline
        while raw := readline():
            lineno += 1
            cached = cache.get(raw)
            if cached is not None:
                self.lineno = lineno
                yield cached
                continue
            self.lineno = lineno
            record, handle = self._decode(raw)
            self._check_refs(record, counts[Register], counts[Open])
            if handle is not None:
                cls = type(record.op)
                kind = KIND_BY_CLASS[cls]
                if handle != counts[cls]:
                    n = counts[cls]
                    raise self.error(f"{kind.name} record has handle {kind.handle}{handle},"
                                     f" expected {kind.handle}{n} (the {_ordinal(n)} {kind.name})")
                counts[cls] += 1
            else:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[raw] = record
            yield record

    def _decode(self, raw: bytes) -> tuple[Record, int | None]:
        obj = self._parse(raw)
        try:
            return _decode_record(obj)
        except _Shape as exc:
            raise self.error(f"schema violation at {json_path(exc.path)}: {exc.message}") from None
        except _Semantic as exc:
            raise self.error(str(exc)) from None

    def _check_refs(self, record: Record, registers: int, opens: int) -> None:
        """``h<n>`` and ``obj<n>`` must name a register / open record before this line."""
        op = record.op
        handler = op.handler if isinstance(op, Unregister) else None
        if isinstance(handler, HandleRef) and handler.index >= registers:
            raise self.error(f"$.args.handler: {handler} names a register record that"
                             f" is not before this line ({registers} so far)")
        ref = getattr(op, "obj", None)
        if isinstance(ref, ObjRef) and ref.index >= opens:
            raise self.error(f"$.args.obj: {ref} names an open record that is not before"
                             f" this line ({opens} so far)")
        if record.answer is not None:
            for i, call in enumerate(record.answer.calls):
                if call.registration >= registers:
                    raise self.error(f"$.answer.calls[{i}].registration: h{call.registration}"
                                     " names a register record that is not before this line"
                                     f" ({registers} so far)")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _ordinal(index: int) -> str:
    n = index + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def read_header(path: str | os.PathLike[str], *, allow_special: bool = False) -> TraceHeader:
    with TraceReader(path, allow_special=allow_special) as reader:
        return reader.header


def iter_records(path: str | os.PathLike[str], *,
                 allow_special: bool = False) -> Iterator[Record]:
    """The records of a trace, streamed and validated (the header is checked too)."""
    with TraceReader(path, allow_special=allow_special) as reader:
        yield from reader


def read_trace(path: str | os.PathLike[str], *, allow_special: bool = False) -> Trace:
    """A whole trace in memory, validated."""
    with TraceReader(path, allow_special=allow_special) as reader:
        return Trace(reader.header, tuple(reader))
