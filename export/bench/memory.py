"""Peak memory per variant, each measured in a fresh child process so variants cannot inflate each other.

The child imports the backend's libraries, resets the kernel's peak-RSS mark (Linux
`/proc/self/clear_refs`), reads its resident set size (the baseline: interpreter + libraries), opens
the model, runs `runs` batch-1 inferences on a blank frame and reads the peak (`VmHWM`). Reported: the
peak, the baseline and their difference (what opening and running the model added at most). Where
the mark cannot be reset, the peak is `ru_maxrss`, which also counts the imports (and, after exec, the
parent's size at fork), so it is an upper bound. Run as `python -m lineside.export.bench.memory
SPEC_JSON`; it prints one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lineside.export.bench.variants import BackendSpec, open_runner, preload

RUNS = 10
METHOD = (
    "child process per variant: peak RSS (VmHWM, reset after importing the backend) while opening the model and "
    f"running {RUNS} inferences; model RSS = peak minus the RSS after imports"
)
STATUS = Path("/proc/self/status")


def _status_mb(key: str) -> float | None:
    """A `kB` field of /proc/self/status in MiB (None where there is no /proc)."""
    if not STATUS.is_file():
        return None
    for line in STATUS.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return None


def reset_peak() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb(reset: bool) -> float:
    """Peak RSS since the reset (VmHWM), else the lifetime peak `ru_maxrss` (KiB on Linux, bytes on macOS)."""
    hwm = _status_mb("VmHWM") if reset else None
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure_here(spec: BackendSpec, input_size: tuple[int, int], runs: int) -> dict[str, Any]:
    """Baseline and peak RSS of opening and running `spec` in this (fresh) process."""
    preload(spec.kind)
    reset = reset_peak()
    baseline = _status_mb("VmRSS")
    image = np.zeros((1, *input_size, 3), np.uint8)  # (1, H, W, 3)
    with contextlib.ExitStack() as stack:
        opened = open_runner(spec, stack)
        for _ in range(runs):
            opened.run(image)
        peak = peak_rss_mb(reset)
    return {
        "peak_rss_mb": round(peak, 1),
        "baseline_rss_mb": None if baseline is None else round(baseline, 1),
        "model_rss_mb": None if baseline is None else round(peak - baseline, 1),
        "peak_since_reset": reset,
    }


def measure(spec: BackendSpec, input_size: tuple[int, int], runs: int = RUNS, timeout_s: float = 600) -> dict[str, Any]:
    """Run `measure_here` in a child Python; on failure the result says why instead of a number."""
    payload = json.dumps({"spec": spec.to_dict(), "input_size": list(input_size), "runs": runs})
    argv = [sys.executable, "-m", "lineside.export.bench.memory", payload]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"memory child timed out after {timeout_s:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"memory child exited {done.returncode}: {last}"}
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    """Child entry point: measure the spec in argv[0] and print the result as one JSON line."""
    payload = json.loads(argv[0])
    spec = BackendSpec(**payload["spec"])
    result = measure_here(spec, tuple(payload["input_size"]), int(payload["runs"]))  # type: ignore[arg-type]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
