"""The order `pytest -n` hands tests out in (tests/scheduling.py): longest first, from the recorded table."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.scheduling import DurationRecorder, load_durations, longest_first, scope_of


def _units(*nodeids: str) -> list[tuple[str, dict[str, bool]]]:
    grouped: dict[str, dict[str, bool]] = {}
    for nodeid in nodeids:
        grouped.setdefault(scope_of(nodeid), {})[nodeid] = False
    return list(grouped.items())


def test_the_longest_recorded_test_goes_first_and_an_unrecorded_end_to_end_test_before_short_ones() -> None:
    # Given a table that knows two end-to-end tests and a slow unit test
    durations = {
        "tests/e2e/test_a.py::short": 20.0,
        "tests/e2e/test_b.py::long": 250.0,
        "tests/unit/x.py::s": 5,
    }
    units = _units(
        "tests/unit/x.py::a",
        "tests/e2e/test_a.py::short",
        "tests/unit/x.py::s",
        "tests/e2e/test_new.py::unknown",
        "tests/e2e/test_b.py::long",
        "tests/unit/x.py::b",
    )

    # When they are ordered
    order = [scope for scope, _ in longest_first(units, durations)]

    # Then longest first, a new e2e test counts as a minute, and the quick ones keep collection order
    assert order == [
        "tests/e2e/test_b.py::long",
        "tests/e2e/test_new.py::unknown",
        "tests/e2e/test_a.py::short",
        "tests/unit/x.py::s",
        "tests/unit/x.py::a",
        "tests/unit/x.py::b",
    ]


def test_a_shared_fixture_module_is_one_unit_worth_the_sum_of_its_tests() -> None:
    # Given the gateway smoke module's tests (one shared gateway) and one test longer than each of them
    smoke = "tests/contract/test_gateway_smoke.py"
    durations = {f"{smoke}::one": 40.0, f"{smoke}::two": 40.0, "tests/contract/test_x.py::alone": 70.0}
    units = _units("tests/contract/test_x.py::alone", f"{smoke}::one", f"{smoke}::two")

    # Then the module goes first, as one unit holding both tests
    (first, tests), (second, _) = longest_first(units, durations)
    assert (first, list(tests), second) == (
        smoke,
        [f"{smoke}::one", f"{smoke}::two"],
        "tests/contract/test_x.py::alone",
    )


def test_the_recorder_writes_what_the_scheduler_reads_and_a_broken_table_only_loses_the_order(
    tmp_path: Path,
) -> None:
    # Given a run in which one test took 3 s over its phases and another a few milliseconds
    table = tmp_path / "durations.json"
    recorder = DurationRecorder(table)
    for nodeid, phase, seconds in (
        ("t::slow", "setup", 1.0),
        ("t::slow", "call", 2.04),
        ("t::quick", "call", 0.01),
    ):
        recorder.pytest_runtest_logreport(
            pytest.TestReport(nodeid, ("t", 0, nodeid), {}, "passed", None, phase, duration=seconds)
        )

    # When the session ends in the controller
    recorder.pytest_sessionfinish(SimpleNamespace(config=SimpleNamespace()))  # type: ignore[arg-type]

    # Then the table holds the slow test only, and the scheduler reads it back
    assert json.loads(table.read_text()) == {"t::slow": 3.0}
    # (an xdist worker, which sees only its own share, writes nothing)
    table.unlink()
    recorder.pytest_sessionfinish(SimpleNamespace(config=SimpleNamespace(workerinput={})))  # type: ignore[arg-type]
    assert not table.exists()
    recorder.pytest_sessionfinish(SimpleNamespace(config=SimpleNamespace()))  # type: ignore[arg-type]
    assert load_durations(table) == {"t::slow": 3.0}
    # And a damaged table gives no durations rather than an error
    table.write_text("{not json")
    assert load_durations(table) == {}


def test_the_tests_of_a_browser_module_share_its_stack_and_other_end_to_end_tests_stand_alone() -> None:
    # Given two tests of a browser module (one local stack per module) and two of another e2e module
    chat = "tests/e2e/browser/test_web_chat.py"
    stack = "tests/e2e/test_local_stack.py"

    # When they are grouped into units of work
    units = dict(_units(f"{chat}::one", f"{stack}::a", f"{chat}::two", f"{stack}::b"))

    # Then the browser module is one unit and each other test its own
    assert units == {
        chat: {f"{chat}::one": False, f"{chat}::two": False},
        f"{stack}::a": {f"{stack}::a": False},
        f"{stack}::b": {f"{stack}::b": False},
    }
