"""`make deploy` with nothing changed: wall time and AWS calls by service, against in-process moto.

A first deploy is rehearsed once (tests/unit/deploy_rehearsal.py: moto for AWS, a recording runner for
`sam` and the image builder), then BENCH_DEPLOYS runs with nothing changed are timed. Each must run no
program at all (no build, no push, no sam) and upload nothing; the figures are the median and max wall
time, the time spent inside moto's emulation (AWS would answer those calls over the network instead), and
the AWS calls of one run by operation. Baseline measured in the same run: the first deploy (with its image
"build" and `sam deploy` played by the recorder, i.e. without their real minutes). Goal: under 30 s.
Prints figures; never fails on time.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared"), str(ROOT / "bridge")]

from tests.conftest import TEST_ENV  # noqa: E402

os.environ.update(TEST_ENV)
for _name in ("TELEGRAM_BOT_TOKEN", "CI"):
    os.environ.pop(_name, None)

from moto import mock_aws  # noqa: E402

from bench.moto_probe import counting, in_moto  # noqa: E402
from scripts import deploy, deploy_answers  # noqa: E402
from scripts.aws_errors import exit_code  # noqa: E402
from tests.unit.deploy_rehearsal import PYTHON312, Rehearsal  # noqa: E402
from tests.unit.test_publish_frontend import write_frontend  # noqa: E402

DEPLOYS = int(os.environ.get("BENCH_DEPLOYS", "5"))
FIRST_RUN = ["--stack", "bench", "--provider", "anthropic", "--owner-email", "owner@example.com"]
GOAL_SECONDS = 30.0


def make_deploy(rehearsal: Rehearsal, argv: list[str]) -> float:
    """One `make deploy` without a terminal; its wall time (its output is swallowed)."""
    out = io.StringIO()
    console = deploy_answers.Console(out=out, interactive=False)
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-bench-key-abcdefghijklmnop", "PYTHON312": PYTHON312}
    rehearsal.calls.clear()
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = exit_code(lambda: deploy.run(deploy.parse_args(argv), env, console, rehearsal))
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"make deploy failed ({code}): {err.getvalue()}")
    return elapsed


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as folder, mock_aws():
        for module, name, value in (
            (deploy_answers, "ANSWERS_DIR", Path(folder) / ".deploy"),
            (deploy, "FRONTEND", write_frontend(Path(folder) / "frontend")),
        ):
            setattr(module, name, value)
        rehearsal = Rehearsal()
        first = make_deploy(rehearsal, FIRST_RUN)
        first_programs = rehearsal.programs()
        times, moto_times, programs = [], [], []
        calls: Counter[str] = Counter()
        for _ in range(DEPLOYS):
            in_moto[0] = 0.0
            with counting() as counted:
                times.append(make_deploy(rehearsal, []))
            moto_times.append(in_moto[0])
            programs.append(rehearsal.programs())
            calls = Counter(counted)
    print(f"make deploy, nothing changed ({DEPLOYS} runs against in-process moto, recorded sam and builder):")
    median = statistics.median(times)
    print(f"  wall time   median {median:.2f} s, max {max(times):.2f} s (goal < {GOAL_SECONDS:.0f} s)")
    print(
        f"  in moto     median {statistics.median(moto_times):.2f} s of that (AWS answers over the network)"
    )
    ran = sorted({" / ".join(p) or "none" for p in programs})
    print(f"  programs    {ran}  (no build, no push, no sam)")
    print(f"  AWS calls   {sum(calls.values())} per run:")
    by_service: Counter[str] = Counter()
    for operation, count in calls.items():
        by_service[operation.split(".")[0]] += count
    for service, count in sorted(by_service.items()):
        detail = ", ".join(
            f"{op.split('.')[1]} {n}" for op, n in sorted(calls.items()) if op.startswith(service + ".")
        )
        print(f"    {service:<15} {count:>3}  ({detail})")
    print(f"baseline: the first deploy took {first:.2f} s and ran {' / '.join(first_programs)}")


if __name__ == "__main__":
    main()
