"""``sec-oracle bench campaign``'s columns on tiny streams: the C program compiles, runs
the ops against the target's .so and ends where the Python executor does.  Nothing
here times anything: rates are only checked to exist."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from oracle.campaign.bench import (
    bench_campaign,
    build_c,
    c_source,
    chained_ops,
    describe,
    run_c,
    run_python,
)
from oracle.campaign.check import CheckConfig
from oracle.ccompile import LIBBPF_H
from oracle.environment import Environment, prepare
from oracle.model.oracle import Oracle
from oracle.ops import HandleRef, HandlerOpts, Op, ProgTypeByName, Register, Unregister
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf


@pytest.fixture(scope="module")
def env() -> Environment:
    if shutil.which("clang") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler (clang or cc)")
    if not LIBBPF_H.exists():
        pytest.skip(f"no {LIBBPF_H} (libbpf-dev)")
    target_or_skip("1.7.0")
    return prepare("1.7.0")


def test_calls_only_source_has_no_checks() -> None:
    source = c_source([Register(b"a/", 2, 0), ProgTypeByName(b"a/x")], "1.7.0")
    assert "EXPECT_RC" not in source and "printf" not in source
    assert 'libbpf_register_prog_handler("a/", 2, 0, NULL);' in source


def test_c_column_runs_the_stream_and_ends_where_python_does(env: Environment,
                                                             tmp_path: Path) -> None:
    config = CheckConfig(libbpf="1.7.0", seconds=None, cases=6, seed=3, avoid_known=True,
                         findings=tmp_path / "findings")
    ops = chained_ops(env, config, 6)
    assert any(isinstance(op, Register) for op in ops)
    program = build_c(env.target, ops, env.version, tmp_path)
    c = run_c(program, env.target)  # also checks the calls went to the target's .so
    ops_file = tmp_path / "ops.pickle"
    ops_file.write_bytes(pickle.dumps(ops))
    python = run_python(env.target, ops_file, 64)  # a fresh process: ids from 1
    oracle = Oracle(env.profile, bpf=env.bpf)
    oracle.run(ops)
    assert c["next_id"] == python["next_id"] == oracle.registry.last_handler_id + 1
    assert c["seconds"] > 0


def test_hand_made_stream_registers_what_it_says(env: Environment, tmp_path: Path) -> None:
    ops: list[Op] = [Register(b"a/", 2, 0), Register(b"c", 2, 0, HandlerOpts(sz=1)),  # -EINVAL
                     Register(b"b+", 2, 0), ProgTypeByName(b"b/x"), Unregister(HandleRef(0)),
                     Unregister(99)]
    c = run_c(build_c(env.target, ops, env.version, tmp_path), env.target)
    assert c["next_id"] == 3  # ids 1 and 2 handed out, the probe gets 3


def test_bench_campaign_reports_every_column(env: Environment) -> None:
    result = bench_campaign(env, cases=8, rounds=1)
    assert result["chained_ops"] > 8
    assert result["c_ops_per_s"] is not None and result["c_ops_per_s"] > 0
    assert result["ratio_to_c"] is not None and result["ratio_to_python_executor"] > 0
    assert result["c"]["compiler"] in ("clang", "cc")
    text = describe(result)
    for label in ("C ", "Python executor", "campaign"):
        assert label in text
