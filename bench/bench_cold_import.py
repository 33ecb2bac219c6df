"""Cold import time of every Lambda function module, each in a fresh interpreter (goal ≤ 300 ms).

Baseline measured in the same run: `import boto3` alone, which every function pays anyway.

Then the layer's bytecode: the layer is built as `sam build` builds it (layers/shared/Makefile, with this
machine's wheels instead of arm64 ones), and each function is imported by python3.12 (the runtime's
version) with the layer as built (its .pyc files) and with the same layer stripped of them, as SAM's own
build shipped it; both with bytecode writing off, as on Lambda's read-only /opt. boto3 comes compiled, as
the runtime's does. Wall and CPU time of the import, medians of fresh processes taking turns, same run.
Prints figures; never fails on time.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from importlib.metadata import version
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


LAYER_PROBE = """
import sys, time, importlib
sys.path[:0] = {paths!r}
t, c = time.perf_counter(), time.process_time()
importlib.import_module({module!r})
print((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000)
"""


def probe_layer(python: str, module: str, paths: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Import `module` once in a fresh python3.12 process that writes no bytecode: wall and CPU ms."""
    out = subprocess.run(
        [python, "-s", "-B", "-c", LAYER_PROBE.format(paths=paths, module=module)],
        env=env,
        cwd=paths[0],
        check=True,
        capture_output=True,
        text=True,
    )
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def measure_layers(
    python: str, module: str, variants: list[list[str]], env: dict[str, str]
) -> list[tuple[float, float]]:
    """Median wall and CPU ms of RUNS imports per variant, the variants taking turns (a machine whose
    load drifts during the run weighs on both alike)."""
    samples: list[list[tuple[float, float]]] = [[] for _ in variants]
    for _ in range(RUNS):
        for index, paths in enumerate(variants):
            samples[index].append(probe_layer(python, module, paths, env))
    return [
        (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs)) for runs in samples
    ]


def prepare_layers(python: str, root: Path) -> tuple[Path, Path, Path, Path] | None:
    """The layer with and without bytecode, the functions' code and a compiled boto3 under `root`."""
    from tests.lambda_layer import build_layer

    print(
        "  building the layer (make build-SharedLayer, this machine's wheels for python3.12) ...", flush=True
    )
    built = build_layer(root / "layer", python, pip_args="--only-binary=:all:")
    if built.returncode != 0:
        print(f"  skipped: the layer did not build: {(built.stderr or built.stdout).strip()[-300:]}")
        return None
    print(f"  installing boto3=={version('boto3')} for python3.12, compiled as the runtime's ...", flush=True)
    runtime = root / "runtime"
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(runtime)]
        + ["--only-binary=:all:", f"boto3=={version('boto3')}"],
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        print(f"  skipped: boto3 did not install: {installed.stderr.strip()[-300:]}")
        return None
    compiled = root / "layer" / "python"
    bare = root / "bare" / "python"
    shutil.copytree(compiled, bare, ignore=shutil.ignore_patterns("__pycache__"))
    task = root / "task"
    shutil.copytree(ROOT / "functions", task / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    return task, compiled, bare, runtime


def layer_bytecode(env: dict[str, str]) -> None:
    """Each function's cold import with the layer's bytecode against without, in the same run."""
    from tests.lambda_layer import python312

    print(f"cold import under python3.12, layer with bytecode vs without (median of {RUNS}; wall / CPU ms)")
    python = python312()
    if python is None:
        print("  skipped: no python3.12 on PATH or under ~/.pyenv")
        return
    with tempfile.TemporaryDirectory(prefix="bench-layer-") as tmp:
        prepared = prepare_layers(python, Path(tmp))
        if prepared is None:
            return
        task, compiled, bare, runtime = prepared
        layer_env = {k: v for k, v in env.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
        with_pyc = [str(task), str(compiled), str(runtime)]
        without = [str(task), str(bare), str(runtime)]
        print(f"  {'function':<24} {'with .pyc':>17} {'without':>17}   {'CPU saved':>9}")
        for app in sorted(ROOT.glob("functions/*/app.py")):
            module = f"functions.{app.parent.name}.app"
            for paths in (with_pyc, without):  # warm the file cache, unmeasured
                probe_layer(python, module, paths, layer_env)
            (wall_pyc, cpu_pyc), (wall_bare, cpu_bare) = measure_layers(
                python, module, [with_pyc, without], layer_env
            )
            name = app.parent.name
            print(
                f"  {name:<24} {wall_pyc:7.1f} / {cpu_pyc:6.1f}  {wall_bare:7.1f} / {cpu_bare:6.1f}"
                f"   {cpu_bare - cpu_pyc:6.1f} ms ({cpu_bare / cpu_pyc:.2f}×)"
            )


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
    layer_bytecode(env)


if __name__ == "__main__":
    main()
