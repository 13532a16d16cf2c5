"""The fuzzing harness (fuzz/): decoder, seeds, policy, harness, a short atheris run, triage."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz import checks, gen_corpus
from fuzz.decode import MAX_OPS, decode, encode_seed
from oracle.campaign.known import registry_changes_under_open_object
from oracle.campaign.runner import ANCHOR
from oracle.model.objects import NotModelledError
from oracle.model.oracle import Oracle
from oracle.ops import (
    HandleRef,
    ObjRef,
    Op,
    Open,
    ProgTypeByName,
    Register,
    Unregister,
)
from tests.targets import target_or_skip

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "fuzz" / "harness_registry.py"
SEEDS = sorted((ROOT / "corpus" / "fuzz" / "registry").glob("seed-*"))
KB1_OPS: list[Op] = [Register(b"", 2, 0), ProgTypeByName(b"x")]


def strings(ops: list[Op]) -> list[bytes]:
    found = []
    for op in ops:
        for name in ("sec", "name"):
            value = getattr(op, name, None)
            if isinstance(value, bytes):
                found.append(value)
    return found


def check_well_formed(ops: list[Op]) -> None:
    registers = opens = 0
    for op in ops:
        if isinstance(op, Unregister) and isinstance(op.handler, HandleRef):
            assert 0 <= op.handler.index < registers
        for value in vars(op).values() if hasattr(op, "__dict__") else ():
            assert not isinstance(value, ObjRef) or value.index < opens
        obj = getattr(op, "obj", None)
        if isinstance(obj, ObjRef):
            assert 0 <= obj.index < opens
        registers += isinstance(op, Register)
        opens += isinstance(op, Open)
    assert all(b"\0" not in s for s in strings(ops))
    assert len(ops) <= MAX_OPS


# -- decoder -------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=600), st.booleans())
def test_decode_is_total_and_the_oracle_accepts_it(data: bytes, lifecycle: bool) -> None:
    ops = decode(data, lifecycle=lifecycle)
    assert decode(data, lifecycle=lifecycle) == ops  # deterministic
    check_well_formed(ops)
    assert not registry_changes_under_open_object(ops)  # KB3 kept out by construction
    for version in ("1.1.2", "1.7.0"):
        try:
            answers = Oracle(version, bpf=False).run(ops)
        except NotModelledError:
            continue
        assert len(answers) == len(ops)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_registry_mode_has_no_lifecycle_ops(data: bytes) -> None:
    ops = decode(data)
    assert all(isinstance(op, Register | Unregister) or type(op).__name__.endswith("ByName")
               for op in ops)


@settings(max_examples=200)
@given(st.binary(max_size=400), st.booleans())
def test_encode_seed_inverts_decode(data: bytes, lifecycle: bool) -> None:
    ops = decode(data, lifecycle=lifecycle)
    try:
        seed = encode_seed(ops, lifecycle=lifecycle)
    except ValueError:  # e.g. a 4 KiB string: decodable, not written by the encoder
        return
    assert decode(seed, lifecycle=lifecycle) == ops


@pytest.mark.parametrize("case_id, ops", gen_corpus.seed_cases())
def test_divergence_cases_round_trip_as_seeds(case_id: str, ops: list[Op]) -> None:
    seed = encode_seed(ops)
    assert decode(seed) == ops
    assert decode(seed, lifecycle=True) == ops
    assert (ROOT / "corpus" / "fuzz" / "registry" / f"seed-{case_id}").read_bytes() == seed


def test_corpus_and_dictionary_are_generated() -> None:
    ids = {case_id for case_id, _ in gen_corpus.seed_cases()}
    assert {"D1", "D5", "D11", "D12"} <= ids and not ids & {"D13", "D14"}
    assert gen_corpus.main(["--check"]) == 0
    words = (ROOT / "corpus" / "fuzz" / "registry.dict").read_text()
    assert '"kprobe"' in words and '"cgroup/connect4"' in words


# -- expected outcomes as data ------------------------------------------------------


def test_policy_comes_from_the_known_bug_list() -> None:
    assert checks.policy("1.1.2", "plain").anchor  # KB2
    assert not checks.policy("1.7.0", "plain").anchor
    assert checks.policy("1.7.0", "fuzz").skip_empty_sec  # KB1 halts sanitizer builds
    assert not checks.policy("1.7.0", "plain").skip_empty_sec
    assert not checks.policy("1.7.0", "fuzz", allow_known=True).skip_empty_sec
    assert checks.signature_is_known("1.7.0", "crash:pointer-overflow:sec_def_matches")
    assert not checks.signature_is_known("1.7.0", "divergence:register:rc:id->-EINVAL")


def test_admissible_and_fresh_case() -> None:
    ops: list[Op] = [Register(b"", 2, 0), Register(b"a", 1, 0), Unregister(HandleRef(0)),
                     Unregister(HandleRef(1)), Unregister(1), ProgTypeByName(b"a")]
    fuzz_1_1 = checks.policy("1.1.2", "fuzz")
    assert checks.admissible(ops, fuzz_1_1) == [Register(b"a", 1, 0), Unregister(HandleRef(0)),
                                               ProgTypeByName(b"a")]
    assert checks.fresh_case(ops, fuzz_1_1) == [ANCHOR, Register(b"a", 1, 0),
                                               Unregister(HandleRef(1)), ProgTypeByName(b"a")]
    assert checks.admissible(ops, checks.policy("1.7.0", "plain")) == ops


# -- against real libbpf --------------------------------------------------------------



def random_inputs(directory: Path, n: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"random-{i:04d}"
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))))
        paths.append(path)
    return paths


def run_harness(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    return subprocess.run([sys.executable, str(HARNESS), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.libbpf
@pytest.mark.parametrize("spec", ["system", "1.7.0"])
def test_harness_agrees_with_the_oracle_on_seeds(spec: str, tmp_path: Path) -> None:
    """The libFuzzer callback, called directly (``--replay``) in a subprocess."""
    target_or_skip(spec)
    inputs = [str(p) for p in (*SEEDS, *random_inputs(tmp_path / "r", 300, 1))]
    result = run_harness(f"--libbpf={spec}", "--replay", "--repeat=2", *inputs, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no divergence" in result.stdout


@pytest.mark.libbpf
def test_harness_lifecycle_mode_agrees(tmp_path: Path) -> None:
    target_or_skip("1.7.0")
    inputs = [str(p) for p in random_inputs(tmp_path / "r", 200, 2)]
    result = run_harness("--libbpf=1.7.0", "--lifecycle", "--replay", *inputs, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.libbpf
def test_short_atheris_run_finds_nothing_new(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install -e '.[fuzz]')")
    target_or_skip("1.7.0+fuzz")
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus" / "fuzz" / "registry", corpus)
    result = run_harness("--libbpf=1.7.0+fuzz", "-runs=2000", "-seed=1",
                         f"-dict={ROOT / 'corpus' / 'fuzz' / 'registry.dict'}", str(corpus),
                         cwd=tmp_path)
    output = result.stdout + result.stderr
    if result.returncode != 0:  # only documented bugs may stop it
        signatures = re.findall(r"FuzzDivergence: (\S+)", output)
        assert signatures, output[-3000:]
        assert all(checks.signature_is_known("1.7.0", s) for s in signatures), signatures
    else:
        assert re.search(r"Done \d+ runs", output), output[-3000:]
        assert re.search(r"cov: \d+", output)


@pytest.mark.libbpf
def test_triage_of_a_crafted_kb1_input(tmp_path: Path) -> None:
    from fuzz.triage import triage

    spec = "1.7.0+asan"
    target_or_skip(spec)
    crash = tmp_path / "crash-kb1"
    crash.write_bytes(encode_seed(KB1_OPS))
    findings = tmp_path / "findings"
    rows = triage([crash], libbpf=spec, findings=findings, allow_known=True, shrink_tries=100)
    assert [(r.result, r.known) for r in rows] == [("known", "KB1")]
    assert rows[0].signature.startswith("crash:")
    directory = Path(rows[0].directory)
    assert {p.name for p in directory.iterdir()} >= {"finding.json", "trace.jsonl", "repro.c",
                                                    "summary.md"}
    # without --allow-known the harness never runs Register(""): nothing to reproduce
    rows = triage([crash], libbpf=spec, findings=tmp_path / "f2", shrink_tries=10)
    assert [r.result for r in rows] == ["not reproduced"]
