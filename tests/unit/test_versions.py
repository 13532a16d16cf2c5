"""The behaviour profile as data (oracle.model.versions): rows, cut points, statuses."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import pytest

from oracle.model.versions import (
    BEHAVIOURS,
    FIRST_RELEASE,
    VERIFIED,
    Profile,
    behaviour_values,
    profile,
    release_tuple,
    status,
)

#: per field, the value at releases on both sides of each cut (docs/versions.md's table)
CUTS: Final[dict[str, dict[str, Any]]] = {
    "sloppy_builtin_prefix": {"0.8.0": True, "0.8.3": True, "1.0.0": False, "1.0.3": False,
                              "1.7.0": False},
    "legacy_maps_section": {"0.8.0": True, "0.8.3": True, "1.0.0": False, "1.7.0": False},
    "clean_error_pointers": {"0.8.0": False, "0.8.3": False, "1.0.0": True, "1.7.0": True},
    "reads_enum64_btf": {"0.8.0": False, "0.8.3": False, "1.0.0": True, "1.7.0": True},
    "text_program_when_alone": {"0.8.3": True, "1.3.3": True, "1.3.4": False, "1.4.6": True,
                                "1.4.7": False, "1.5.0": False},
    "set_type_resets_handler": {"0.8.3": "never", "1.1.2": "never", "1.2.0": "always",
                                "1.2.1": "always", "1.2.2": "when_changed",
                                "1.3.0": "when_changed", "1.7.0": "when_changed"},
    "attach_requires_fd": {"0.8.3": False, "1.3.4": False, "1.4.0": True, "1.7.0": True},
    "struct_ops_rejected_early": {"0.8.3": False, "1.4.1": False, "1.4.2": True, "1.3.4": False,
                                  "1.5.0": True},
}


def fields() -> list[str]:
    return list(dict.fromkeys(row.field for row in BEHAVIOURS))


def test_every_field_has_a_first_release_row_and_a_profile_field() -> None:
    names = {f.name for f in dataclasses.fields(Profile)}
    for name in fields():
        rows = [row for row in BEHAVIOURS if row.field == name]
        assert rows[0].first_release == FIRST_RELEASE and rows[0].commit == "", name
        assert name in names, name
        # oldest first; every later row names the upstream commit and its subject
        assert [release_tuple(r.first_release) for r in rows] == sorted(
            release_tuple(r.first_release) for r in rows), name
        for row in rows[1:]:
            assert len(row.commit) == 40 and row.subject.startswith("libbp"), row
            assert row.function, row


@pytest.mark.parametrize("name", sorted(CUTS))
def test_cut_points(name: str) -> None:
    for version, value in CUTS[name].items():
        assert behaviour_values(version)[name] == value, (name, version)


def test_every_field_is_cut_tested() -> None:
    assert set(fields()) == set(CUTS)


def test_profile_defaults_are_the_newest_behaviour() -> None:
    """A Profile built without rows (tests, a future field) behaves as master does."""
    newest = behaviour_values("99.0.0")
    defaults = {f.name: f.default for f in dataclasses.fields(Profile)}
    assert {name: defaults[name] for name in newest} == newest


@pytest.mark.parametrize("version", VERIFIED)
def test_verified_profiles_take_their_rows(version: str) -> None:
    release = profile(version)
    assert release.status == "verified"
    for name, value in behaviour_values(version).items():
        assert getattr(release, name) == value, (version, name)


def test_0_8_3_is_verified_and_sloppy_builtins_come_from_its_table() -> None:
    old, new = profile("0.8.3"), profile("1.0.3")
    assert status("0.8.0") == "inferred from 0.8.3"
    assert status("0.9.9") == "inferred from 0.8.3"
    # the status names a verified release; the values are still 1.0.0's rows
    assert status("1.0.0") == "inferred from 0.8.3"
    assert behaviour_values("1.0.0") == behaviour_values("1.0.3")
    assert [d.sec for d in old.sloppy_builtins][:3] == [b"socket", b"sk_reuseport/migrate",
                                                        b"sk_reuseport"]
    assert all(not d.sec.endswith((b"/", b"+")) for d in old.sloppy_builtins)
    assert new.sloppy_builtins == ()  # 1.0 dropped SEC_SLOPPY_PFX from the table too
