"""``sec-oracle corpus add``: a finding becomes a regression trace (the model's answers) and a seed.

Finding directories are crafted here (finding.json + trace.jsonl with a
"buggy" libbpf answer), so no libbpf is needed: the regression case must
replay on the oracle, the finding's own trace must not, the seed must decode
to the finding's ops, and bad input is one line, exit 2, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz.decode import decode
from oracle.bpfelf import ObjectSpec, Program
from oracle.campaign.findings import slug
from oracle.cli import main
from oracle.corpus_add import seed_of
from oracle.model.oracle import Oracle
from oracle.ops import (
    Answer,
    Close,
    HandleRef,
    ObjRef,
    Op,
    Open,
    ProgTypeByName,
    Register,
    Unregister,
)
from oracle.replay import replay
from oracle.traces import LibbpfInfo, TraceHeader, read_trace, records_of, write_trace
from tests.cli.test_bad_input import assert_one_line_error, run

REGISTRY_OPS: list[Op] = [Register(b"abc+", 2, 0), ProgTypeByName(b"abc/x")]
#: a registry change under an open object (KB3's shape): the lifecycle decoder closes first
UNDER_OPEN_OPS: list[Op] = [Register(b"abc", 2, 0),
                            Open(ObjectSpec((Program(b"abc"),))), Unregister(HandleRef(0))]


def finding(root: Path, signature: str, ops: list[Op], *, confirmed: bool = True) -> Path:
    """A finding directory whose trace has the model's answers but for the last op's rc."""
    oracle = Oracle("1.7.0")
    answers = [oracle.apply(op) for op in ops]
    answers[-1] = Answer(answers[-1].rc - 1000, answers[-1].out, answers[-1].calls)
    directory = root / slug(signature)
    directory.mkdir(parents=True)
    header = TraceHeader(LibbpfInfo("1.7.0", "plain", "ab" * 32, "/x/libbpf.so.1"),
                         origin="shrink", seed=5, note=signature)
    write_trace(directory / "trace.jsonl", header, records_of(ops, answers))
    (directory / "finding.json").write_text(json.dumps(
        {"kind": "divergence", "signature": signature, "confirmed": confirmed, "seed": 5}))
    return directory


def add(capsys: pytest.CaptureFixture[str], tmp_path: Path, *dirs: Path) -> tuple[int, str]:
    """``corpus add DIRS`` into tmp_path/traces and tmp_path/seeds: (status, stdout)."""
    code = main(["corpus", "add", *map(str, dirs), "--traces", str(tmp_path / "traces"),
                 "--seeds", str(tmp_path / "seeds")])
    return code, capsys.readouterr().out


def test_a_registry_finding_becomes_a_regression_and_a_registry_seed(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = finding(tmp_path / "findings", "divergence:prog_type_by_name:rc:ok->x",
                        REGISTRY_OPS)
    code, out = add(capsys, tmp_path, directory)
    assert code == 0, out
    case = tmp_path / "traces" / f"{directory.name}.jsonl"
    trace = read_trace(case)
    assert trace.header.origin == "regression" and trace.header.libbpf.version == "1.7.0"
    assert "divergence:prog_type_by_name:rc:ok->x" in (trace.header.note or "")
    assert trace.ops == REGISTRY_OPS
    assert replay([case]).traces[0].status == "conforms"           # the model's answers
    assert replay([directory / "trace.jsonl"]).traces[0].status == "diverges"  # libbpf's
    seed = tmp_path / "seeds" / "registry" / directory.name
    assert decode(seed.read_bytes()) == REGISTRY_OPS
    # a second add keeps both files as they are
    before = case.read_bytes()
    code, out = add(capsys, tmp_path, directory)
    assert code == 0 and case.read_bytes() == before
    assert out.count("kept ") == 2, out


def test_ops_no_decoder_produces_get_a_case_and_no_seed_with_the_reason(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = finding(tmp_path / "findings", "divergence:unregister:rc:ok->x", UNDER_OPEN_OPS)
    code, out = add(capsys, tmp_path, directory)
    assert code == 0, out
    case = tmp_path / "traces" / f"{directory.name}.jsonl"
    assert replay([case]).traces[0].status == "conforms"
    assert not [p for p in (tmp_path / "seeds").rglob("*") if p.is_file()]
    line = next(x for x in out.splitlines() if x.startswith("no seed"))
    assert "registry: open ops need lifecycle=True" in line and "lifecycle:" in line


def test_lifecycle_ops_become_a_lifecycle_seed() -> None:
    ops: list[Op] = [Open(ObjectSpec((Program(b"abc"),))), Close(ObjRef(0))]
    seed = seed_of(ops)
    assert not isinstance(seed, str), seed
    harness, data = seed
    assert harness == "lifecycle" and decode(data, lifecycle=True) == ops


@pytest.mark.parametrize("what", ["missing", "empty-dir", "no-trace", "bad-json", "no-signature"])
def test_not_a_finding_directory_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             what: str) -> None:
    directory = tmp_path / "f"
    if what != "missing":
        directory.mkdir()
    if what in ("no-trace", "bad-json", "no-signature"):
        (directory / "finding.json").write_text(
            {"no-trace": '{"signature": "s", "confirmed": true}', "bad-json": "{",
             "no-signature": '{"confirmed": true}'}[what])
    if what in ("bad-json", "no-signature"):
        (directory / "trace.jsonl").write_text("")
    code, err = run(capsys, "corpus", "add", str(directory), "--traces", str(tmp_path / "t"),
                    "--seeds", str(tmp_path / "s"))
    assert_one_line_error(code, err, str(directory))
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()


def test_an_unconfirmed_finding_needs_force(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    good = finding(tmp_path / "findings", "divergence:a:rc:ok->x", REGISTRY_OPS)
    unconfirmed = finding(tmp_path / "findings", "divergence:b:rc:ok->x", REGISTRY_OPS,
                          confirmed=False)
    argv = ["corpus", "add", str(good), str(unconfirmed), "--traces", str(tmp_path / "t"),
            "--seeds", str(tmp_path / "s")]
    code, err = run(capsys, *argv)
    assert_one_line_error(code, err, "not confirmed", "--force")
    assert not (tmp_path / "t").exists()  # every directory is checked before anything is written
    code, _ = run(capsys, *argv, "--force")
    assert code == 0
    assert len(list((tmp_path / "t").glob("*.jsonl"))) == 2


def test_a_release_without_a_model_is_one_line(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    directory = finding(tmp_path / "findings", "divergence:c:rc:ok->x", REGISTRY_OPS)
    trace = read_trace(directory / "trace.jsonl")
    header = TraceHeader(LibbpfInfo("0.0.1"), origin="shrink")
    write_trace(directory / "trace.jsonl", header, trace.records)
    code, err = run(capsys, "corpus", "add", str(directory), "--traces", str(tmp_path / "t"),
                    "--seeds", str(tmp_path / "s"))
    assert_one_line_error(code, err, "no model of libbpf 0.0.1")


def test_fuzz_adds_its_harness_regression_seeds(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import fuzz.cli

    monkeypatch.setattr(fuzz.cli, "REGRESSION_SEEDS", tmp_path / "seeds")
    (tmp_path / "seeds" / "registry").mkdir(parents=True)
    (tmp_path / "seeds" / "registry" / "divergence-x-1234").write_bytes(b"\x00")
    fuzz.cli.seed_corpus(tmp_path / "registry", "registry")
    fuzz.cli.seed_corpus(tmp_path / "lifecycle", "lifecycle")
    assert (tmp_path / "registry" / "divergence-x-1234").is_file()
    assert (tmp_path / "registry" / "seed-gen00").is_file()  # the generated seeds too
    assert not (tmp_path / "lifecycle" / "divergence-x-1234").exists()
