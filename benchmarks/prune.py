"""Benchmark: ``runner-cache prune`` against ``rclone delete``, a minio one-by-one loop and the raw DeleteObjects limit.

Each variant gets a fresh SeaweedFS (``weed mini`` from the local backend) seeded with the same realistic layout:
three non-shared runners and the shared layout under Path ``cache``, many projects and keys, 1 % non-cache
objects among the new ones. SeaweedFS cannot backdate LastModified, so the old half is written first, then the
benchmark waits ``--gap`` seconds and writes the new half; every variant gets the age cut-off in the middle of
that gap (as days for runner-cache, seconds for rclone, an absolute time for the loops). Seeding goes through
the filer's HTTP API (no S3 signing: about twice as fast); deleting, the thing measured, goes through S3.

Every variant runs as the only child of a tiny wrapper process, which reports wall time and the child's peak
RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). runner-cache talks to a ``prefect server`` started once.

Reproduce (the numbers in docs/benchmarks.md)::

    apt-get install -y rclone
    .venv/bin/python benchmarks/prune.py --objects 10000 --objects 200000 --json benchmarks/prune-results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if TYPE_CHECKING:
    from runner_cache.blocks.store import StoreSettings
# The project's modules (and with them Prefect) are imported only by the orchestrating process, inside the
# functions below: the (c) and (d) children import minio alone, so their time and RSS are theirs.

PATH = "cache"
BUCKET = "runner"
TOKENS = ("a1b2c3d4e", "f5g6h7i8j", "k9l0m1n2o", None)  # three runners and the shared layout
KINDS = ("main", "develop", "feature", "mr")
BODY = b"\0" * 256
VARIANTS = ("runner-cache", "rclone", "rclone-server-modtime", "minio-loop", "raw")
CONCURRENCY = 8


def layout(count: int) -> tuple[list[str], list[str]]:
    """(old half, new half) of object names; every 100th new object is not a cache object."""
    projects = max(20, count // 500)
    names = []
    for i in range(count):
        token = TOKENS[i % len(TOKENS)]
        scope = f"runner/{token}/" if token else ""
        project = 1 + (i // len(TOKENS)) % projects
        protection = "protected" if i % 3 else "non_protected"
        key = f"{KINDS[i % len(KINDS)]}-{i}-{protection}"
        names.append(f"{PATH}/{scope}project/{project}/{key}")
    old, new = names[: count // 2], names[count // 2 :]
    new = [f"{name.rsplit('/', 1)[0]}/tmp/{i}.part" if i % 100 == 0 else name for i, name in enumerate(new)]
    return old, new


def seed(store: StoreSettings, names: list[str]) -> None:
    """PUT every object through the SeaweedFS filer (the bucket's directory), 32 at a time."""
    filer_port = json.loads((store.state_dir / "ports.json").read_text())["filer.port"]
    http = urllib3.PoolManager(maxsize=32)
    base = f"http://127.0.0.1:{filer_port}/buckets/{store.bucket}/"

    def put(name: str) -> None:
        response = http.request("PUT", base + name, body=BODY)
        if response.status not in (200, 201):
            raise RuntimeError(f"seeding {name}: HTTP {response.status}")

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, names))


def count_objects(store: StoreSettings) -> int:
    return sum(1 for _ in store.client().list_objects(store.bucket, prefix=f"{PATH}/", recursive=True))


# The wrapper that runs one variant: it must stay tiny, because Linux carries a process's peak RSS across
# fork and exec into its child's ru_maxrss, so a wrapper with big imports would raise every child's figure.
_MEASURE = """
import json, resource, subprocess, sys, time
started = time.monotonic()
with open(sys.argv[1], "w") as output:
    code = subprocess.call(sys.argv[2:], stdout=output, stderr=subprocess.STDOUT)
seconds = time.monotonic() - started
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(peak_kb / 1024, 1), "exit_code": code}))
"""
# ``runner-cache prune`` exactly as the console script runs it, but through the prune command module alone, so
# that the benchmark neither needs cli.py to list the command nor imports the other commands.
_RUNNER_CACHE = """
import argparse, sys
from runner_cache.errors import ConfigError
from runner_cache.commands import prune
parser = argparse.ArgumentParser(prog="runner-cache")
prune.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args()
try:
    sys.exit(args.func(args))
except ConfigError as error:
    sys.exit(f"runner-cache: {error}")
"""


def measure(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command`` under the tiny wrapper: wall seconds, peak RSS of the child, exit code, load before it."""
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-S", "-c", _MEASURE, str(log), *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return {**json.loads(done.stdout), "load_before": round(load, 2)}


def _client(args: argparse.Namespace):
    from minio import Minio

    return Minio(
        args.address, access_key=os.environ["BENCH_ACCESS_KEY"], secret_key=os.environ["BENCH_SECRET_KEY"], secure=False
    )


def _minio_loop(args: argparse.Namespace) -> None:
    """(c) One remove_object per old object, as a plain script would do it."""
    client = _client(args)
    for entry in client.list_objects(args.bucket, prefix=args.prefix, recursive=True):
        if entry.last_modified.timestamp() < args.cutoff:
            client.remove_object(args.bucket, entry.object_name)


def _raw(args: argparse.Namespace) -> None:
    """(d) The raw limit: list, compare LastModified, DeleteObjects batches of 1000 on 8 workers; no parsing, no rules."""
    from minio.deleteobjects import DeleteObject

    client = _client(args)

    def delete(batch: list[str]) -> int:
        return sum(1 for _ in client.remove_objects(args.bucket, [DeleteObject(name) for name in batch]))

    batch: list[str] = []
    in_flight: deque[Future[int]] = deque()
    errors = 0
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for entry in client.list_objects(args.bucket, prefix=args.prefix, recursive=True):
            if entry.last_modified.timestamp() < args.cutoff:
                batch.append(entry.object_name)
            if len(batch) == 1000:
                in_flight.append(pool.submit(delete, batch))
                batch = []
                while len(in_flight) >= 2 * CONCURRENCY:
                    errors += in_flight.popleft().result()
        if batch:
            in_flight.append(pool.submit(delete, batch))
        errors += sum(future.result() for future in in_flight)
    if errors:
        raise SystemExit(f"{errors} delete errors")


class PrefectServer:
    """A ``prefect server`` on a free loopback port with its own home, for runner-cache's flow runs."""

    def __init__(self, home: Path) -> None:
        from tests.support.servers import free_port

        self.port = free_port()
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
        }
        self.log = open(home.parent / "prefect-server.log", "w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        http = urllib3.PoolManager()
        while time.monotonic() < deadline:
            try:
                if (
                    http.request("GET", f"http://127.0.0.1:{self.port}/api/health", timeout=2, retries=False).status
                    == 200
                ):
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("prefect server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def run_variant(variant: str, count: int, gap: float, work: Path, prefect: PrefectServer) -> list[dict[str, Any]]:
    """Fresh store, seed, run the variant (and for runner-cache its dry run first); one result row each."""
    from pydantic import SecretStr

    from runner_cache.blocks.store import StoreSettings
    from runner_cache.tasks.store import local_backend
    from tests.support.servers import free_port

    state = work / f"{variant}-{count}"
    store = StoreSettings(
        backend="local",
        endpoint=f"http://127.0.0.1:{free_port()}",
        bucket=BUCKET,
        state_dir=state,
        access_key=SecretStr("bench-" + secrets.token_hex(4)),
        secret_key=SecretStr(secrets.token_urlsafe(24)),
    )
    local_backend.ensure(store)
    try:
        store.client().make_bucket(BUCKET)
        old, new = layout(count)
        started = time.monotonic()
        seed(store, old)
        time.sleep(gap / 2)
        boundary = time.time()
        time.sleep(gap / 2)
        seed(store, new)
        seeding = time.monotonic() - started
        expected = len(old)
        total = count_objects(store)
        access, secret = store.credentials()
        env = {
            **os.environ,
            "BENCH_ACCESS_KEY": access.get_secret_value(),
            "BENCH_SECRET_KEY": secret.get_secret_value(),
        }
        runs = []
        if variant == "runner-cache":
            env = {
                **env,
                **prefect.env,
                "RUNNER_CACHE_STORE__BACKEND": "external",
                "RUNNER_CACHE_STORE__ENDPOINT": store.endpoint,
                "RUNNER_CACHE_STORE__ACCESS_KEY": access.get_secret_value(),
                "RUNNER_CACHE_STORE__SECRET_KEY": secret.get_secret_value(),
                "RUNNER_CACHE_STORE__BUCKET": BUCKET,
                "RUNNER_CACHE_CACHE__PATH": PATH,
            }
            binary = [sys.executable, "-c", _RUNNER_CACHE]
            for name, extra in (("runner-cache --dry-run", ["--dry-run"]), ("runner-cache", [])):
                days = (time.time() - boundary) / 86400
                runs.append(
                    (
                        name,
                        measure(
                            [*binary, "prune", "--max-age-days", f"{days:.9f}", *extra],
                            env,
                            state.parent / f"{variant}-{count}-{len(runs)}.log",
                        ),
                    )
                )
        elif variant.startswith("rclone"):
            env = {
                **env,
                "RCLONE_CONFIG_BENCH_TYPE": "s3",
                "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
                "RCLONE_CONFIG_BENCH_ENDPOINT": store.endpoint,
                "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": access.get_secret_value(),
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": secret.get_secret_value(),
            }
            env.pop("AWS_CA_BUNDLE", None)  # Debian's rclone 1.60 fails to load it (TESTING-NOTES)
            extra = ["--use-server-modtime"] if variant == "rclone-server-modtime" else []
            age = f"{time.time() - boundary:.3f}s"
            runs.append(
                (
                    variant,
                    measure(
                        ["rclone", "delete", "--min-age", age, *extra, f"bench:{BUCKET}/{PATH}/"],
                        env,
                        state.parent / f"{variant}-{count}.log",
                    ),
                )
            )
        else:
            command = [
                sys.executable,
                __file__,
                f"_{variant.replace('-', '_')}",
                "--address",
                store.server_address,
                "--bucket",
                BUCKET,
                "--prefix",
                f"{PATH}/",
                "--cutoff",
                str(boundary),
            ]
            runs.append((variant, measure(command, env, state.parent / f"{variant}-{count}.log")))
        remaining = count_objects(store)
        rows = []
        for name, result in runs:
            dry = "dry-run" in name
            deleted = expected if dry else total - remaining
            rows.append(
                {
                    "variant": name,
                    "objects": count,
                    "deleted": deleted,
                    "expected": expected,
                    "seconds": result["seconds"],
                    "per_second": round(deleted / result["seconds"], 1),
                    "peak_rss_mb": result["peak_rss_mb"],
                    "exit_code": result["exit_code"],
                    "seeding_seconds": round(seeding, 1),
                    "load_before": result["load_before"],
                }
            )
            if not dry and deleted != expected:
                rows[-1]["note"] = f"deleted {deleted}, expected {expected}"
        if variant == "runner-cache":
            log = (state.parent / f"{variant}-{count}-1.log").read_text()
            marker = "prune finished in "
            if marker in log:
                inner = float(log.split(marker, 1)[1].split(" s", 1)[0])
                rows[-1]["task_seconds"] = inner
                rows[-1]["task_per_second"] = round(rows[-1]["deleted"] / inner, 1)
        return rows
    finally:
        local_backend.stop(store)
        shutil.rmtree(state, ignore_errors=True)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| objects | variant | deleted | seconds | deleted/s | peak RSS (MB) | load before |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rate = f"{row['per_second']:,.0f}"
        if "task_per_second" in row:
            rate += f" (in the task: {row['task_per_second']:,.0f})"
        lines.append(
            f"| {row['objects']:,} | {row['variant']} | {row['deleted']:,} | {row['seconds']:.1f} | {rate} "
            f"| {row['peak_rss_mb']:.0f} | {row.get('load_before', '?')} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory = (
        int(
            next(
                line.split()[1]
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            )
        )
        // 1024
        // 1024
    )
    rclone = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.splitlines()[0]
    weed = subprocess.run(
        [str(Path(sys.executable).parent / "weed"), "version"], capture_output=True, text=True
    ).stdout.strip()
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {memory} GiB RAM, Python {platform.python_version()}, {rclone}, {weed}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_minio_loop", "_raw"):
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        for name in ("--address", "--bucket", "--prefix"):
            parser.add_argument(name, required=True)
        parser.add_argument("--cutoff", type=float, required=True)
        args = parser.parse_args()
        (_minio_loop if args.mode == "_minio_loop" else _raw)(args)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, action="append", help="objects to seed (repeatable; default 10000)")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="only these variants (repeatable)")
    parser.add_argument("--gap", type=float, default=30.0, help="seconds between the old and the new half")
    parser.add_argument("--json", type=Path, help="also write the rows and the machine to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runner-cache-bench-"))
    prefect = PrefectServer(work / "prefect")
    rows = []
    try:
        for count in args.objects or [10000]:
            for variant in args.variant or VARIANTS:
                for row in run_variant(variant, count, args.gap, work, prefect):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        prefect.stop()
    print(markdown(rows))
    if any(row["exit_code"] or "note" in row for row in rows):
        print(f"some variants failed or deleted the wrong count: logs are in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        document = {
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "rows": rows,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
