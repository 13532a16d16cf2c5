"""Traces: op sequences (with libbpf's answers) as JSON Lines files.

File layout (``format_version`` 1, schema ``oracle/schemas/trace-v1.schema.json``):
- Line 1 is the header object: ``format`` ("libbpf-sec-oracle/trace"),
  ``format_version`` (1), ``libbpf`` (``version``, ``variant``, ``so_sha256``,
  ``path``), ``oracle_version``, ``seed``, ``origin``, ``created`` and an
  optional free-text ``note``.
- Every further line is one record, one call:
  ``{"op": KIND, "args": {...}, "handle": "h<n>", "answer": {"rc": .., "out": [..],
  "calls": [..]}, "log": [..]}``.  ``handle`` is present exactly on
  ``register`` (``"h<n>"``) and ``open`` (``"obj<n>"``) records; ``answer``
  and ``log`` are optional (a trace without answers is a plain op sequence),
  and so is ``calls`` inside an answer (absent: libbpf called no callback).
- Object lifecycle records (``open``, ``prog_info``, ``set_type``,
  ``set_autoload``, ``load``, ``attach``, ``close``) came after version 1's
  first release without a version bump: every older trace still reads.

Encoding rules (each value has exactly one meaning; the writer emits one
canonical form, the reader also accepts the non-canonical alternatives noted):
- Byte strings (``sec``, ``name``, ``opts.tail`` and those below): a JSON
  string when every byte is printable ASCII (0x20..0x7e), else
  ``{"hex": "<lowercase pairs>"}``; ``null`` is C's NULL (only where the op
  allows it).  The reader accepts hex for printable bytes too.
  ``sec``/``name`` never contain a NUL byte.
- ``rc``: an int, or ``"-E<NAME>"`` when it is negative and a known Linux
  errno (``-22`` is written ``"-EINVAL"``; the reader accepts either form and
  every errno alias such as ``"-ENOTSUP"``).
- Enum arguments (``prog_type``, ``exp_attach_type``) are the u32 the C ABI
  carries; so are out-parameters, except byte strings (below); an
  out-parameter libbpf left untouched is ``null``.
- ``Unregister.handler`` is ``"h<n>"`` (``HandleRef(n)``: what the n-th
  ``register`` record returned) or a plain C int.  The n-th register record
  carries ``"handle": "h<n>"`` (0-based, counting every register record).
- ``opts``: ``null`` or an object with all of ``sz``, ``cookie``,
  ``prog_setup_fn``, ``prog_prepare_load_fn``, ``prog_attach_fn`` (each
  ``null`` or ``{"ret": int}``) and ``tail``.
- ``obj`` of an ``open``: an ``ObjectSpec`` as ``{"programs": [{"section":
  bytes, "name": bytes, "insns": bytes}, ..], "license": bytes or null}``, or
  raw object bytes as ``{"hex": ..}`` (always hex, even for ``b""``).  The two
  never share a key set.  ``section``/``name``/``license`` never contain NUL.
- ``obj`` of the other lifecycle ops: ``"obj<n>"`` (``ObjRef(n)``: what the
  n-th ``open`` record opened); the n-th open record carries
  ``"handle": "obj<n>"`` (0-based, counting every open record, failed or not).
  ``prog``: a C int (out of range is the harness's ``NO_PROGRAM``);
  ``autoload``: a JSON boolean.
- Out-parameters are ``null`` (untouched) or per kind: u32 for the lookups
  and ``open`` (the number of programs); ``prog_info``'s are ``[name,
  section, type, expected_attach_type, autoload]``, the first two byte
  strings (as above), the others u32.
- ``calls``: ``[{"callback": "prog_setup_fn" | "prog_prepare_load_fn" |
  "prog_attach_fn", "registration": "h<n>", "program": bytes, "section":
  bytes, "cookie": long, "ret": C int}, ..]`` in call order;
  ``registration`` names the register record whose opts held the callback.
  The writer omits an empty ``calls``; the reader accepts ``[]``.
- Integers may be written as integral JSON numbers (``1.0``), as JSON Schema
  allows; booleans are never integers.

Invariants:
- The op kinds and their argument codecs live in one table, ``OP_KINDS``: an
  entry names the kind, its ``oracle.ops`` dataclass and one codec per field.
  The encoder, the decoder and the JSON Schema are all derived from it, so a
  new op kind is one entry (then regenerate the schema file with
  ``write_schema()``; a test fails until the file matches).
- Every read validates: the header with jsonschema; each record with the hand
  decoder (``check_record``), which accepts exactly the records the schema
  accepts (proved by a property test), then with the checks a schema cannot
  express: handle numbering (``h<n>``, ``obj<n>``), ``h<n>`` (``handler``,
  a call's ``registration``) naming an earlier register record and
  ``obj<n>`` an earlier open record, ``opts.sz`` not larger than the bytes
  given, an ``open``'s spec one ``oracle.bpfelf.build_object`` accepts.
- Every bad input is a ``TraceError`` of one line: ``FILE: line N: what``.
- Reading is bounded by the limits in ``records`` (``MAX_LINE_BYTES`` per
  line, ``MAX_DEPTH`` of nesting, ``MAX_OBJECT_BYTES`` per ``open`` object)
  and opens only regular files unless asked (``files`` module rules).
- ``write_trace`` writes only a new path or a regular file, with the user's
  umask (``oracle.outputs``).
- ``write_trace`` is atomic: a temp file in the same directory, fsynced, then
  renamed over the target; readers never see a partial trace.
- Reading streams (``TraceReader``/``iter_records``); identical lines without
  a handle decode once (a bounded cache), since a decoded ``Record`` is immutable.

Modules (one job each; no module imports a later one):
- ``records``: the data (``LibbpfInfo``, ``TraceHeader``, ``Record``,
  ``Trace``) and the format's name and version.
- ``codecs``: the value codecs (encode, decode, JSON Schema) and the codec
  errors ``_Shape``/``_Semantic``.
- ``kinds``: the op table ``OP_KINDS``, errno names for ``rc``, and the
  encoders and hand decoder of ops, answers and records (``check_record``).
- ``schema``: the JSON Schema derived from the table (generate, write, load,
  validate) and the header's codec, which validates with it.
- ``files``: writing trace files atomically and reading them
  (``TraceReader``, ``read_trace``).
This package re-exports the public API below, so ``from oracle.traces import X``
is the import to use.
"""

from oracle.traces.files import (
    TraceReader,
    dump_line,
    iter_lines,
    iter_records,
    read_header,
    read_trace,
    write_trace,
)
from oracle.traces.kinds import (
    ERRNO_NAME,
    ERRNO_VALUE,
    KIND_BY_CLASS,
    KIND_BY_NAME,
    OP_KINDS,
    RC_NAMES,
    OpKind,
    check_record,
    decode_answer,
    decode_op,
    encode_answer,
    encode_op,
    encode_rc,
    encode_record,
    rc_text,
)
from oracle.traces.records import (
    FORMAT,
    FORMAT_VERSION,
    VARIANTS,
    LibbpfInfo,
    Record,
    Trace,
    TraceHeader,
    records_of,
)
from oracle.traces.schema import (
    SCHEMA_FILE,
    decode_header,
    encode_header,
    load_schema,
    schema_document,
    schema_error,
    schema_path,
    validator,
    write_schema,
)

__all__ = [
    "ERRNO_NAME",
    "ERRNO_VALUE",
    "FORMAT",
    "FORMAT_VERSION",
    "KIND_BY_CLASS",
    "KIND_BY_NAME",
    "OP_KINDS",
    "RC_NAMES",
    "SCHEMA_FILE",
    "VARIANTS",
    "LibbpfInfo",
    "OpKind",
    "Record",
    "Trace",
    "TraceHeader",
    "TraceReader",
    "check_record",
    "decode_answer",
    "decode_header",
    "decode_op",
    "dump_line",
    "encode_answer",
    "encode_header",
    "encode_op",
    "encode_rc",
    "encode_record",
    "iter_lines",
    "iter_records",
    "load_schema",
    "rc_text",
    "read_header",
    "read_trace",
    "records_of",
    "schema_document",
    "schema_error",
    "schema_path",
    "validator",
    "write_schema",
    "write_trace",
]
