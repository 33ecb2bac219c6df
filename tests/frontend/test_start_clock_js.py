"""The start-up banner's clock (frontend/assets/app/start_clock.js) under Node: what a person waiting sees
never goes backwards, never sits on one message, and says so when a start is slower than usual."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local.runtime import REPO, runtime

DRIVER = Path(__file__).with_name("start_clock_driver.mjs")


def sample(frames: list[tuple[float, dict[str, Any]]], until: float) -> list[dict[str, Any]]:
    """The banner four times a second until `until`, with each frame taken at its time (seconds)."""
    node = runtime().node
    if not node.exists():
        pytest.fail(f"Node is missing ({node.relative_to(REPO)}): run `make openclaw` first", pytrace=False)
    done = subprocess.run(
        [
            str(node),
            "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON",
            str(DRIVER),
            json.dumps({"frames": frames, "until": until}),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def seconds_left(text: str) -> int | None:
    match = re.fullmatch(r"about (\d+) s left", text)
    return int(match.group(1)) if match else None


def assert_never_backwards(samples: list[dict[str, Any]]) -> None:
    """The bar never goes back nor reaches 100 %, the seconds left never go up, nothing says "almost"."""
    percents = [s["percent"] for s in samples]
    assert percents == sorted(percents) and max(percents) < 100
    lefts = [n for n in (seconds_left(s["text"]) for s in samples) if n is not None]
    assert lefts == sorted(lefts, reverse=True)
    assert not any("almost" in s["text"] for s in samples)


def test_a_start_slower_than_usual_keeps_moving_and_says_it_is_slower_with_the_time_so_far() -> None:
    # Given a start announced at 45 s (the user's usual), whose phases then come later than expected,
    # each with an ETA that would end after the first one
    frames = [
        (0.0, {"phase": "provisioning", "etaSeconds": 45, "usualSeconds": 45, "elapsedSeconds": 0}),
        (20.0, {"phase": "restoring", "etaSeconds": 30, "usualSeconds": 45, "elapsedSeconds": 20}),
        (44.0, {"phase": "booting", "etaSeconds": 25, "usualSeconds": 45, "elapsedSeconds": 44}),
    ]

    # When the banner is watched for two minutes
    samples = sample(frames, 120)

    # Then it counts down to the first ETA and never shows more time left than before
    assert_never_backwards(samples)
    assert samples[0]["text"] == "about 45 s left" and samples[0]["late"] is False
    # And past it, it says the start is slower than usual, with the seconds so far growing every second
    late = [s for s in samples if s["at"] >= 46]
    assert all(s["late"] for s in late)
    assert late[0]["text"] == "taking longer than usual (usually 45 s) · 46 s so far"
    assert late[-1]["text"] == "taking longer than usual (usually 45 s) · 120 s so far"
    # And the bar keeps moving for all of it: no five seconds in a row on one value
    for i in range(len(samples) - 20):
        assert samples[i + 20]["percent"] > samples[i]["percent"], samples[i]


def test_a_start_faster_than_its_eta_jumps_forward_and_a_tab_opened_late_counts_from_the_start() -> None:
    # Given a tab opened 30 s into a start (the server says so) and the next phase sooner than expected
    frames = [
        (0.0, {"phase": "restoring", "etaSeconds": 20, "usualSeconds": 50, "elapsedSeconds": 30}),
        (5.0, {"phase": "booting", "etaSeconds": 4, "usualSeconds": 50, "elapsedSeconds": 35}),
    ]

    # When the banner is watched
    samples = sample(frames, 12)

    # Then the bar starts where the start is (60 % of the way), not at zero, and the ETA moves down at once
    assert samples[0]["percent"] == pytest.approx(48, abs=1) and samples[0]["text"] == "about 20 s left"
    at_five = next(s for s in samples if s["at"] == 5)
    assert at_five["text"] == "about 4 s left"
    assert_never_backwards(samples)
