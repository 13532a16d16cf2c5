"""The C libFuzzer harness (``fuzz/c/registry_fuzzer.c``): it builds, runs, and decodes
its input exactly as ``fuzz.decode`` does; ``sec-oracle bench fuzz`` reports its columns.

Nothing here asserts a time.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from fuzz import cfuzzer, checks
from fuzz.cli import SEEDS
from fuzz.decode import decode
from oracle.ccompile import LIBBPF_H
from oracle.ops import (
    AttachTypeByName,
    HandleRef,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
    zero_check_len,
)
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf


@pytest.fixture(autouse=True)
def clang_or_skip() -> None:
    if shutil.which("clang") is None or not LIBBPF_H.exists():
        pytest.skip("needs clang and libbpf-dev's headers")


def _name(value: bytes | None) -> str:
    return "-" if value is None else (value.hex() or '""')


def _opts(opts: HandlerOpts | None) -> str:
    if opts is None:
        return "-"
    mask = sum(1 << i for i, cb in enumerate((opts.prog_setup_fn, opts.prog_prepare_load_fn,
                                               opts.prog_attach_fn)) if cb is not None)
    tail = opts.tail[: zero_check_len(opts.sz)]
    return f"{opts.sz},{opts.cookie},{mask},{tail.hex() or chr(34) * 2}"


def trace_line(op: Op) -> str:
    """What the traced C harness prints for ``op`` (see the C file)."""
    if isinstance(op, Register):
        return f"T R {_name(op.sec)} {op.prog_type} {op.exp_attach_type} {_opts(op.opts)}"
    if isinstance(op, Unregister):
        handler = op.handler
        return f"T U r{handler.index}" if isinstance(handler, HandleRef) else f"T U {handler}"
    if isinstance(op, ProgTypeByName):
        return f"T P {_name(op.name)}"
    assert isinstance(op, AttachTypeByName)
    return f"T A {_name(op.name)}"


def test_it_builds_and_runs_for_a_few_seconds(tmp_path: Path) -> None:
    target = target_or_skip("1.7.0+fuzz")
    fuzzer = cfuzzer.build(target.path, checks.policy("1.7.0", "fuzz"), tmp_path / "build")
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    result = cfuzzer.run(fuzzer, corpus, 3)
    assert result["status"] == 0 and result["execs"] > len(list(SEEDS.iterdir()))
    assert result["exec_per_s"] > 0


def test_it_calls_what_fuzz_decode_decodes(tmp_path: Path) -> None:
    """The seeds and random bytes: the C harness's calls are the Python harness's ops."""
    target = target_or_skip("1.7.0+fuzz")
    policy = checks.policy("1.7.0", "fuzz")
    fuzzer = cfuzzer.build(target.path, policy, tmp_path / "build", trace=True)
    rng = random.Random(11)
    inputs = [p.read_bytes() for p in sorted(SEEDS.iterdir())]
    inputs += [rng.randbytes(rng.randrange(1, 300)) for _ in range(300)]
    # bias towards the interesting spec bytes: opts forms, string bases and mods
    inputs += [bytes(rng.choice((0, 1, 4, 5, 7, 0x81, 0xB3, 0x76, 0xFF, rng.randrange(256)))
                     for _ in range(rng.randrange(1, 200))) for _ in range(300)]
    files = []
    for i, data in enumerate(inputs):
        files.append(tmp_path / f"in{i:04d}")
        files[-1].write_bytes(data)
    # -detect_leaks=0: libFuzzer runs an input a second time when it saw more mallocs
    # than frees (any thread's, so it depends on the machine's load): two traces
    done = subprocess.run([str(fuzzer.binary), "-detect_leaks=0", *map(str, files)],
                          capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seen: dict[str, list[str]] = {}
    current = None
    for line in done.stderr.splitlines():
        if line.startswith("Running: "):
            current = line.removeprefix("Running: ")
            seen[current] = []
        elif line.startswith("T ") and current is not None:
            seen[current].append(line)
    assert len(seen) == len(files)
    for file, data in zip(files, inputs, strict=True):
        expected = [trace_line(op) for op in checks.admissible(decode(data), policy)]
        assert seen[str(file)] == expected, (file.name, data.hex())


def test_bench_fuzz_reports_every_column() -> None:
    pytest.importorskip("atheris", reason="atheris is not installed: pip install -e '.[fuzz]'")
    target_or_skip("1.7.0+fuzz")
    from fuzz.bench import bench_fuzz, describe

    result = bench_fuzz("1.7.0+fuzz", seconds=2, repeat=1)
    for name in ("registry", "lifecycle"):
        row = result["harnesses"][name]
        assert row["libfuzzer"]["execs"] > 0 and row["libfuzzer"]["exec_per_s"] is not None
        assert row["replay"]["inputs"] == result["seeds"] and row["replay"]["inputs_per_s"] > 0
    assert result["c_registry"]["execs"] > 0, result["c_registry"]
    table = describe(result)
    assert "registry" in table and "lifecycle" in table and "exec/s" in table
