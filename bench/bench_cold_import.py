"""Cold import time of every Lambda function module, each in a fresh interpreter (goal ≤ 300 ms).

Baseline measured in the same run: `import boto3` alone, which every function pays anyway.
Prints figures; never fails on time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
GOAL_MS = 300.0

PROBE = """
import time, importlib
t = time.perf_counter()
importlib.import_module({module!r})
print((time.perf_counter() - t) * 1000)
"""


def _env() -> dict[str, str]:
    sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared")]
    from tests.conftest import TEST_ENV  # the same environment the template gives the functions

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(TEST_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "shared")])
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def measure(module: str, env: dict[str, str]) -> list[float]:
    """Import `module` RUNS times, each in a new interpreter; milliseconds."""
    samples = []
    for _ in range(RUNS):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return samples


def main() -> None:
    env = _env()
    measure("boto3", env)  # warm the OS file cache and .pyc files once, unmeasured
    baseline = statistics.median(measure("boto3", env))
    print(f"cold import, median of {RUNS} fresh interpreters (goal ≤ {GOAL_MS:.0f} ms)")
    print(f"  {'baseline: import boto3':<32} {baseline:7.1f} ms")
    for app in sorted(ROOT.glob("functions/*/app.py")):
        module = f"functions.{app.parent.name}.app"
        measure(module, env)
        samples = measure(module, env)
        median = statistics.median(samples)
        verdict = "ok" if median <= GOAL_MS else "OVER GOAL"
        print(
            f"  {app.parent.name:<32} {median:7.1f} ms  (min {min(samples):.1f}, max {max(samples):.1f}; "
            f"{median / baseline:.2f}× boto3)  {verdict}"
        )


if __name__ == "__main__":
    main()
