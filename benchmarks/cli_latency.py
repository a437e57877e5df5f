"""Benchmark: wall time of the everyday commands once the local store and the local Prefect server run.

Issue 15's goal: after the first command, ``plan``, ``setup`` (no changes), ``prune`` on an empty bucket,
``history`` and ``--help`` each answer in under 3 s here. This runs them exactly as a user would — the installed
console script, no ``PREFECT_API_URL``, the default ``local`` store — in a fresh state directory: one ``setup``
first (it starts the store and the local Prefect server and creates everything), then each command ``--runs``
times, interleaved, ``--pause`` seconds apart (as a user types them: right after a command the server is still
storing its logs and events, on the same two cores), and reports the median and the slowest wall time with the
1-minute load around them. The commands run in the warm process that the first ``setup`` starts (README); with
``--alone`` each imports Prefect itself (``RUNNER_CACHE_WARM=off``), as before the warm process.
The state directory (store and Prefect server) is stopped and removed at the end.

Reproduce (the numbers in docs/benchmarks.md)::

    .venv/bin/python benchmarks/cli_latency.py --runs 5 --json benchmarks/cli-latency-warm-2026-11-29.json
    .venv/bin/python benchmarks/cli_latency.py --runs 5 --alone --json benchmarks/cli-latency-alone-2026-11-29.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.servers import free_port  # noqa: E402

BIN = Path(sys.executable).parent
COMMANDS = {
    "--help": ["--help"],
    "history": ["history"],
    "plan": ["plan"],
    "setup (no changes)": ["setup"],
    "prune (empty bucket)": ["prune", "--max-age-days", "30"],
}
TARGET_SECONDS = 3.0


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "runner-cache"), *argv], env=env, cwd=cwd, capture_output=True, text=True)
    return time.monotonic() - started, done.returncode, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (interleaved)")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between two commands")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--alone", action="store_true", help="RUNNER_CACHE_WARM=off: every command imports Prefect itself"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="runner-cache-cli-latency-"))
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RUNNER_CACHE_", "PREFECT_"))}
    env.update(
        RUNNER_CACHE_STORE__STATE_DIR=str(root / "state"),
        RUNNER_CACHE_STORE__ENDPOINT=f"http://127.0.0.1:{free_port()}",
        PREFECT_HOME=str(root / "client-home"),
        XDG_RUNTIME_DIR=str(root / "run"),  # the warm process of this run; `server stop` stops it at the end
    )
    if args.alone:
        env["RUNNER_CACHE_WARM"] = "off"
    (root / "state" / "prefect-server").mkdir(parents=True)
    (root / "state" / "prefect-server" / "port").write_text(str(free_port()))  # not the user's 4200
    try:
        first, code, output = _run(["setup"], env, root)
        if code != 0:
            raise SystemExit(f"the first setup failed:\n{output}")
        again, code, output = _run(["setup"], env, root)
        if code != 0 or "no changes" not in output:
            raise SystemExit(f"the second setup did not say 'no changes':\n{output}")
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        loads: list[float] = [os.getloadavg()[0]]
        for _ in range(args.runs):
            for name, argv in COMMANDS.items():
                time.sleep(args.pause)
                seconds, code, output = _run(argv, env, root)
                if code != 0:
                    raise SystemExit(f"{name} failed:\n{output}")
                times[name].append(seconds)
            loads.append(os.getloadavg()[0])
    finally:
        subprocess.run([str(BIN / "runner-cache"), "server", "stop"], env=env, cwd=root, capture_output=True)
        subprocess.run([str(BIN / "runner-cache"), "store", "stop"], env=env, cwd=root, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        {
            "command": name,
            "median_seconds": round(statistics.median(values), 2),
            "max_seconds": round(max(values), 2),
            "runs": [round(value, 2) for value in values],
            "under_target": max(values) < TARGET_SECONDS,
        }
        for name, values in times.items()
    ]
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "first_setup_seconds": round(first, 1),
        "pause_seconds": args.pause,
        "warm_process": not args.alone,
        "load_1min": {"min": min(loads), "max": max(loads), "samples": [round(load, 2) for load in loads]},
        "rows": rows,
    }
    print(
        f"first setup (starts the store and the Prefect server): {first:.1f} s; load {min(loads):.2f}-{max(loads):.2f}"
    )
    print("| command | median (s) | slowest (s) | under 3 s |")
    print("|---|---|---|---|")
    for row in rows:
        verdict = "yes" if row["under_target"] else "**no**"
        print(f"| `runner-cache {row['command']}` | {row['median_seconds']} | {row['max_seconds']} | {verdict} |")
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
