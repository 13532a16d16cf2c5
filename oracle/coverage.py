"""``sec-oracle coverage``: line and branch coverage of libbpf's handler code, measured.

Runs input through the ``+cov`` build of a release or tree (``build``:
``-fprofile-instr-generate -fcoverage-mapping``), merges the profiles with
``llvm-profdata`` and reads ``llvm-cov report -show-functions`` for the
functions that implement custom SEC() handlers (``FUNCTIONS``).

Rules:
- Input: ``--traces DIR`` (every ``*.jsonl``, replayed on the worker as
  ``sec-oracle replay`` does), ``--corpus DIR`` (every file decoded with
  ``fuzz.decode.decode``, one fresh case each), or a ``check`` run of
  ``--check-seconds`` (a child ``sec-oracle check``; the default when neither
  directory is given).  Answers are not judged here: a diverging trace or a
  check finding still counts as executed code, and is named in the output.
- Profiles go to a fresh run directory (``LLVM_PROFILE_FILE`` with ``%m``:
  the worker child and its forked copies share a pid in the runtime's view,
  so they merge into one file under the runtime's lock; a copy exits
  through libc's ``exit`` so it writes, see ``libbpf.child._exit_copy``).
- Sources are read from the release's unpacked tree or the given tree
  (``-compilation-dir``: a tree build compiled a snapshot that is gone), so
  a tree edited since its build shows its lines against the new text.
- The numbers are llvm-cov's own (``report``), never recomputed: lines and
  branches per function.  Uncovered lines come from ``llvm-cov show`` (count
  ``0``), as ``file:line``.
- A static function is named ``<file>:<name>`` by llvm-cov; a listed function
  is looked up by its plain name or as ``libbpf.c:<name>`` (the static
  ``libbpf_validate_opts`` of ``libbpf_internal.h``, what ``OPTS_VALID``
  expands to, has one copy per file: the one in ``libbpf.c`` is counted).
- Bad input or environment (no such directory, a target that is not a release
  or a tree, missing llvm tools, a listed function missing from the report,
  an unreadable report row) is one ``OracleError`` line and exit 2.
- ``llvm-cov show -name=`` matches substrings (``bpf_program__attach`` would
  bring every ``bpf_program__attach_*``): functions are selected with an
  anchored ``-name-regex``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from oracle.argtypes import positive_float
from oracle.errors import OracleError

if TYPE_CHECKING:
    from oracle.libbpf.targets import Target

#: the functions that implement handlers, in the order the table shows them
FUNCTIONS: Final = (
    "libbpf_register_prog_handler",
    "libbpf_unregister_prog_handler",
    "sec_def_matches",
    "find_sec_def",
    "libbpf_prog_type_by_name",
    "libbpf_attach_type_by_name",
    "bpf_object_init_progs",
    "bpf_object_load_prog",
    "bpf_program__attach",
    "bpf_object__attach_skeleton",
    "bpf_program__set_type",
    "libbpf_validate_opts",
)
SOURCES: Final = ("libbpf.c", "libbpf_internal.h")
#: where llvm tools are looked for after $PATH (a test empties it)
TOOL_DIRS: Final[list[str]] = ["/usr/lib/llvm-*/bin"]
TOOL_HINT: Final = "apt-get install llvm-14 (or run scripts/setup)"
DEFAULT_CHECK_SECONDS: Final = 10.0
_ROW: Final = re.compile(
    r"(?P<name>\S+)\s+(?P<regions>\d+)\s+(?P<rmiss>\d+)\s+(?:[\d.]+%|-)"
    r"\s+(?P<lines>\d+)\s+(?P<lmiss>\d+)\s+(?:[\d.]+%|-)"
    r"\s+(?P<branches>\d+)\s+(?P<bmiss>\d+)\s+(?:[\d.]+%|-)"
)
_FILE: Final = re.compile(r"File '(?P<path>.*)':")
_SHOW_LINE: Final = re.compile(r"\s*(?P<line>\d+)\|\s*(?P<count>[\d.]+[kMGTPE]?)?\|")


@dataclass(frozen=True)
class FunctionCoverage:
    """One listed function as llvm-cov counts it."""

    function: str
    file: str
    lines_covered: int
    lines_total: int
    branches_covered: int
    branches_total: int
    uncovered_lines: tuple[int, ...] = ()

    @property
    def line_percent(self) -> float:
        return 100.0 * self.lines_covered / self.lines_total if self.lines_total else 0.0

    @property
    def branch_percent(self) -> float:
        return 100.0 * self.branches_covered / self.branches_total if self.branches_total else 0.0


@dataclass
class CoverageRun:
    """What ran and what it covered."""

    target: str
    inputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    functions: list[FunctionCoverage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "inputs": self.inputs,
            "notes": self.notes,
            "functions": [
                {**asdict(f), "file": f.file,
                 "uncovered_lines": [f"{f.file}:{n}" for n in f.uncovered_lines],
                 "line_percent": round(f.line_percent, 1),
                 "branch_percent": round(f.branch_percent, 1)}
                for f in self.functions
            ],
        }


# ---------------------------------------------------------------------------
# tools and target


def find_tool(name: str) -> str:
    """``NAME-14``, ``NAME`` on $PATH, else the newest ``/usr/lib/llvm-*/bin/NAME``."""
    for candidate in (f"{name}-14", name):
        found = shutil.which(candidate)
        if found:
            return found
    for pattern in TOOL_DIRS:
        hits = sorted(glob.glob(f"{pattern}/{name}"))
        if hits:
            return hits[-1]
    raise OracleError(f"{name} not found, needed for coverage: {TOOL_HINT}")


def cov_spec(spec: str) -> str:
    """``spec`` as its ``+cov`` build: ``1.7.0`` -> ``1.7.0+cov``; another variant is refused."""
    from oracle.libbpf.targets import parse_target

    kind, _, variant, _ = parse_target(spec)
    if kind not in ("release", "tree"):
        raise OracleError(f"coverage needs a release or a libbpf source tree, not {spec!r}")
    if variant == "cov":
        return spec
    if variant != "plain":
        raise OracleError(f"coverage builds its own +cov variant: drop +{variant} from {spec!r}")
    return f"{spec.rstrip('/')}+cov"


def source_dir(target: Target) -> Path:
    """The ``src`` directory the build compiled (llvm-cov reads the sources there)."""
    if target.kind == "tree":
        assert target.tree is not None
        return target.tree / "src"
    from oracle.libbpf import debsrc

    assert target.version is not None
    return debsrc.source_tree(target.version) / "src"


@contextlib.contextmanager
def profile_env(run_dir: Path) -> Iterator[dict[str, str]]:
    """``LLVM_PROFILE_FILE`` set to the run directory while the input runs."""
    saved = os.environ.get("LLVM_PROFILE_FILE")
    os.environ["LLVM_PROFILE_FILE"] = str(run_dir / "libbpf-%m.profraw")
    try:
        yield dict(os.environ)
    finally:
        if saved is None:
            os.environ.pop("LLVM_PROFILE_FILE", None)
        else:
            os.environ["LLVM_PROFILE_FILE"] = saved


# ---------------------------------------------------------------------------
# running input


def _files(directory: Path, pattern: str, what: str) -> list[Path]:
    if not directory.is_dir():
        raise OracleError(f"{what} {directory}: not a directory")
    found = sorted(p for p in directory.glob(pattern) if p.is_file())
    if not found:
        raise OracleError(f"{what} {directory}: no {pattern} files")
    return found


def run_traces(spec: str, directory: Path, run: CoverageRun) -> None:
    from oracle.replay import replay_on_libbpf

    paths = [str(p) for p in _files(directory, "*.jsonl", "--traces")]
    result = replay_on_libbpf(paths, spec)
    states = [t.status for t in result.traces]
    run.inputs.append(f"{len(paths)} traces of {directory} "
                      f"({states.count('conforms')} conform)")
    for trace in result.traces:
        if trace.status != "conforms":
            run.notes.append(f"{trace.path}: {trace.status} "
                             f"{trace.error or trace.crash or trace.divergence_count}")


def run_corpus(spec: str, directory: Path, run: CoverageRun, *, lifecycle: bool) -> None:
    from fuzz.decode import decode
    from oracle.libbpf.targets import resolve
    from oracle.libbpf.worker import Worker

    paths = _files(directory, "*", "--corpus")
    crashed = 0
    with Worker(resolve(spec)) as worker:
        for path in paths:
            if worker.run_fresh(decode(path.read_bytes(), lifecycle=lifecycle)).crash:
                crashed += 1
    run.inputs.append(f"{len(paths)} corpus files of {directory} "
                      f"({'lifecycle' if lifecycle else 'registry'} decoding)")
    if crashed:
        run.notes.append(f"{crashed} corpus cases crashed (their copy wrote no profile)")


def run_check(spec: str, seconds: float, run: CoverageRun, env: dict[str, str]) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="sec-oracle-cov-check-") as tmp:
        argv = [sys.executable, "-m", "oracle", "check", "--libbpf", spec, "--time", str(seconds),
                "--findings", str(Path(tmp) / "findings"), "--report",
                str(Path(tmp) / "report.json")]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    last = (result.stdout.strip().splitlines() or result.stderr.strip().splitlines()
            or ["no output"])[-1]
    if result.returncode not in (0, 1):
        raise OracleError(f"check run failed (exit {result.returncode}): {last}")
    run.inputs.append(f"check --time {seconds:g}")
    run.notes.append(f"check: {last}")


# ---------------------------------------------------------------------------
# reading llvm-cov


def parse_report(text: str, wanted: Sequence[str] = FUNCTIONS) -> dict[str, FunctionCoverage]:
    """The rows of ``llvm-cov report -show-functions`` for ``wanted`` (module rules)."""
    rows: dict[str, FunctionCoverage] = {}
    current = ""
    for line in text.splitlines():
        header = _FILE.match(line)
        if header:
            current = Path(header["path"]).name
            continue
        if not line.strip() or line.startswith(("Name", "---", "TOTAL", "Files which")):
            continue
        match = _ROW.match(line)
        if match is None:
            raise OracleError(f"unreadable llvm-cov report row: {line.strip()[:120]!r}")
        name = match["name"]
        plain = name.split(":", 1)[1] if ":" in name else name
        if plain not in wanted or (":" in name and not name.startswith("libbpf.c:")):
            continue
        lines, branches = int(match["lines"]), int(match["branches"])
        rows[plain] = FunctionCoverage(plain, current, lines - int(match["lmiss"]), lines,
                                       branches - int(match["bmiss"]), branches)
    missing = [name for name in wanted if name not in rows]
    if missing:
        raise OracleError(f"llvm-cov reports no data for {', '.join(missing)}: "
                          "not a libbpf build with these functions")
    return rows


def report_name(function: FunctionCoverage) -> str:
    """The name llvm-cov knows ``function`` by (static functions carry their file)."""
    return f"libbpf.c:{function.function}" if _is_static(function.function) else function.function


_STATIC: Final = frozenset({"sec_def_matches", "find_sec_def", "bpf_object_init_progs",
                            "bpf_object_load_prog", "libbpf_validate_opts"})


def _is_static(name: str) -> bool:
    return name in _STATIC


def parse_show(text: str) -> dict[str, list[int]]:
    """``llvm-cov show -format=text`` of several functions: their lines with count 0."""
    uncovered: dict[str, list[int]] = {}
    current: list[int] | None = None
    for line in text.splitlines():
        if line.endswith(":") and "|" not in line:
            name = line[:-1].strip()
            current = uncovered.setdefault(name.split(":", 1)[-1] if ":" in name else name, [])
            continue
        match = _SHOW_LINE.match(line)
        if match and current is not None and match["count"] == "0":
            current.append(int(match["line"]))
    return uncovered


class Llvm:
    """llvm-profdata and llvm-cov for one build and its merged profile."""

    def __init__(self, so: Path, sources: Path) -> None:
        self.profdata = find_tool("llvm-profdata")
        self.cov = find_tool("llvm-cov")
        self.so = so
        self.sources = sources

    def merge(self, run_dir: Path) -> Path:
        raws = sorted(run_dir.glob("*.profraw"))
        if not raws:
            raise OracleError(f"no profile written to {run_dir}: is {self.so} a +cov build?")
        merged = run_dir / "merged.profdata"
        self._run([self.profdata, "merge", "-sparse", *map(str, raws), "-o", str(merged)])
        return merged

    def report(self, profile: Path) -> str:
        return self._run([self.cov, "report", "-show-functions", "-instr-profile", str(profile),
                          f"-compilation-dir={self.sources}", str(self.so), *SOURCES])

    def show(self, profile: Path, names: Sequence[str], html: Path | None = None) -> str:
        argv = [self.cov, "show", str(self.so), "-instr-profile", str(profile),
                f"-compilation-dir={self.sources}",
                *(f"-name-regex=^{re.escape(n)}$" for n in names)]
        if html is not None:
            argv += ["-format=html", f"-output-dir={html}", "-show-branches=count"]
        return self._run(argv)

    def _run(self, argv: list[str]) -> str:
        result = subprocess.run(argv, cwd=self.sources, capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            why = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise OracleError(f"{Path(argv[0]).name} {argv[1]} failed: {why}")
        return result.stdout


def measure(llvm: Llvm, run_dir: Path, html: Path | None) -> list[FunctionCoverage]:
    profile = llvm.merge(run_dir)
    rows = parse_report(llvm.report(profile))
    names = [report_name(rows[f]) for f in FUNCTIONS]
    uncovered = parse_show(llvm.show(profile, names))
    if html is not None:
        llvm.show(profile, names, html)
    return [FunctionCoverage(**{**asdict(rows[f]),
                                "uncovered_lines": tuple(uncovered.get(f, ()))})
            for f in FUNCTIONS]


# ---------------------------------------------------------------------------
# the command


def text_table(functions: Sequence[FunctionCoverage]) -> str:
    """The per-function table (markdown, so docs can quote it as printed)."""
    out = ["| function | lines | branches | lines % | branches % |",
           "|---|---:|---:|---:|---:|"]
    for f in functions:
        out.append(f"| {f.function} | {f.lines_covered}/{f.lines_total} | "
                   f"{f.branches_covered}/{f.branches_total} | {f.line_percent:.1f} | "
                   f"{f.branch_percent:.1f} |")
    return "\n".join(out)


def line_ranges(lines: Sequence[int]) -> list[str]:
    """``[1, 2, 3, 7]`` -> ``["1-3", "7"]``."""
    out: list[str] = []
    for n in sorted(lines):
        if out and int(out[-1].rpartition("-")[2]) == n - 1:
            out[-1] = f"{out[-1].partition('-')[0]}-{n}"
        else:
            out.append(str(n))
    return out


def uncovered_text(functions: Sequence[FunctionCoverage]) -> str:
    """``uncovered F: file:L file:L1-L2 ...`` per function with uncovered lines."""
    out = []
    for f in functions:
        if f.uncovered_lines:
            lines = " ".join(f"{f.file}:{r}" for r in line_ranges(f.uncovered_lines))
            out.append(f"uncovered {f.function}: {lines}")
    return "\n".join(out)


def coverage(args: argparse.Namespace) -> CoverageRun:
    from oracle.libbpf.targets import resolve

    spec = cov_spec(args.libbpf)
    for given in (args.traces, args.corpus):
        if given is not None and not given.is_dir():
            raise OracleError(f"{given}: not a directory")
    if args.html is not None and args.html.exists() and not args.html.is_dir():
        raise OracleError(f"--html {args.html}: exists and is not a directory")
    target = resolve(spec)
    llvm = Llvm(target.path, source_dir(target))
    run = CoverageRun(spec)
    with tempfile.TemporaryDirectory(prefix="sec-oracle-cov-") as tmp:
        run_dir = Path(tmp)
        with profile_env(run_dir) as env:
            if args.traces is not None:
                run_traces(spec, args.traces, run)
            if args.corpus is not None:
                run_corpus(spec, args.corpus, run, lifecycle=args.lifecycle)
            if args.check_seconds is not None or (args.traces is None and args.corpus is None):
                run_check(spec, args.check_seconds or DEFAULT_CHECK_SECONDS, run, env)
        run.functions = measure(llvm, run_dir, args.html)
    return run


def _run(args: argparse.Namespace) -> int:
    run = coverage(args)
    print(f"coverage of {run.target}: {'; '.join(run.inputs)}")
    for note in run.notes:
        print(f"note: {note}")
    print(text_table(run.functions))
    listed = uncovered_text(run.functions)
    if listed:
        print(listed)
    if args.json is not None:
        args.json.write_text(json.dumps(run.to_json(), indent=2) + "\n")
    if args.html is not None:
        print(f"html: {args.html / 'index.html'}")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("coverage", help="line/branch coverage of libbpf's handler code")
    parser.add_argument("--libbpf", required=True, metavar="VERSION|DIR",
                        help="a release or source tree; its +cov build is used")
    parser.add_argument("--traces", type=Path, default=None, metavar="DIR",
                        help="replay every *.jsonl trace of DIR")
    parser.add_argument("--corpus", type=Path, default=None, metavar="DIR",
                        help="run every fuzz corpus file of DIR (fuzz/decode.py)")
    parser.add_argument("--lifecycle", action="store_true",
                        help="decode --corpus files in lifecycle mode")
    parser.add_argument("--check-seconds", type=positive_float, default=None, metavar="S",
                        help=f"also run check for S seconds (the default input: "
                             f"{DEFAULT_CHECK_SECONDS:g} s)")
    parser.add_argument("--html", type=Path, default=None, metavar="DIR",
                        help="llvm-cov show -format=html of the listed functions into DIR")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE")
    parser.set_defaults(handler=_run)
