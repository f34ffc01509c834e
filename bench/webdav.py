"""WebDAV drive benchmark: Kantoor's /files/ side by side with wsgidav's filesystem provider and nginx's DAV module.

Every server runs on 127.0.0.1 with HTTP Basic auth and is driven by the same client code:

- small files: N × 4 KiB PUT, then GET, from 8 client threads (keep-alive connections), requests/s;
- large files: M × S MiB PUT, then GET, one at a time (bodies streamed, never held), MB/s;
- PROPFIND Depth: 1 of the folder holding the N small files, milliseconds per request;
- peak resident memory of the server (sum of its processes) during the large transfers, and how
  far it grows above idle during one 1 GiB PUT and GET (``--huge-mib``).

wsgidav runs its FilesystemProvider on Kantoor's own HTTP host (uvicorn with the same protocol
implementation and options, kantoor.davserver.wsgi_host with 16 worker threads, 1 MiB blocks), so the
difference is the provider (authentication against the database, rights, quota, database + blob store
+ locks in the database vs. a password in memory, plain files and in-memory locks). ``wsgidav-stock``
runs it on off-the-shelf uvicorn (h11) + a2wsgi instead, for reference. nginx runs one
worker with ``ngx_http_dav_module`` + ``dav_ext`` (Debian: ``nginx`` + ``libnginx-mod-http-dav-ext``);
a peer that cannot be started is skipped with a message. The ratio columns are Kantoor / peer
(>1: Kantoor is faster, or for memory and CPU: uses more). The "server CPU" rows (CPU time of the
server's processes per request or per MB, bench/process_cpu.py) hold still when other load on the
machine stretches the wall-clock rows.

    python bench/webdav.py                      # 1,000 small, 20 × 50 MiB
    python bench/webdav.py --small 200 --large 4 --large-mib 20   # quick look
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kantoor_process  # noqa: E402
import process_cpu  # noqa: E402

HOST = "127.0.0.1"
USER, PASSWORD = "bench@example.org", "Qx7-harbor-lamp-2291"
CHUNK = 256 * 1024


@dataclass
class Target:
    name: str
    port: int
    base: str  # URL path of the folder everything is written to (ends with "/")
    pids: list[int]
    stop: object = None  # callable
    results: dict[str, float] = field(default_factory=dict)

    def auth(self) -> dict[str, str]:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def rss_kib(self) -> int:
        return process_cpu.rss_kib(self.pids)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


# ---------------------------------------------------------------------------------------------- servers
def start_kantoor() -> Target:
    server = kantoor_process.start()
    try:
        server.add_user(USER, PASSWORD, plan="professional")
    except BaseException:
        server.stop()
        raise
    return Target("kantoor", server.ports["http"], f"/files/{USER}/bench/", [server.process.pid], server.stop)


WSGIDAV_LAUNCHER = textwrap.dedent("""
    import sys, logging, uvicorn
    from wsgidav.wsgidav_app import WsgiDAVApp
    from wsgidav.fs_dav_provider import FilesystemProvider
    root, port, user, password, host = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    app = WsgiDAVApp({
        "provider_mapping": {"/": FilesystemProvider(root)},
        "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "verbose": 0, "logging": {"enable": False}, "dir_browser": {"enable": False},
        "lock_storage": True, "property_manager": True,
        "block_size": 1024 * 1024,  # as Kantoor's drive
    })
    logging.getLogger("wsgidav").setLevel(logging.ERROR)
    options = dict(host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=30,
                   server_header=False, lifespan="off", h11_max_incomplete_event_size=64 * 1024)
    if host == "kantoor":
        # The HTTP host exactly as Kantoor runs it (kantoor/server.py, kantoor/davserver/app.py):
        # the same protocol implementation and WSGI host, 16 worker threads.
        from kantoor.davserver.wsgi_host import WSGIHost
        from kantoor.server import _http_protocol
        uvicorn.run(WSGIHost(app, workers=16), http=_http_protocol(), **options)
    else:
        # Off-the-shelf: uvicorn's h11 and a2wsgi (what Kantoor ran before its own host).
        from a2wsgi import WSGIMiddleware
        uvicorn.run(WSGIMiddleware(app, workers=16), http="h11", **options)
""")


def start_wsgidav(workdir: Path, host: str = "kantoor") -> Target | None:
    root = workdir / f"wsgidav-root-{host}"
    root.mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", WSGIDAV_LAUNCHER, str(root), str(port), USER, PASSWORD, host],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
    except RuntimeError:
        proc.kill()
        print("wsgidav: did not start, skipped")
        return None

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return Target("wsgidav-fs" if host == "kantoor" else "wsgidav-fs-stock", port, "/bench/", [proc.pid], stop)


NGINX_CONF = """
load_module {module};
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    client_max_body_size 0;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/root;
        auth_basic "bench";
        auth_basic_user_file {dir}/htpasswd;
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""


def start_nginx(workdir: Path) -> Target | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    module = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")
    if nginx is None or not module.exists():
        print("nginx: nginx or its dav_ext module is not installed (Debian: nginx libnginx-mod-http-dav-ext), skipped")
        return None
    conf_dir = workdir / "nginx"
    (conf_dir / "root").mkdir(parents=True)
    (conf_dir / "body").mkdir()
    (conf_dir / "htpasswd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = free_port()
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(module=module, dir=conf_dir, port=port))
    result = subprocess.run([nginx, "-c", str(conf)], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"nginx: did not start ({result.stderr.strip()}), skipped")
        return None
    wait_port(port)
    master = int((conf_dir / "nginx.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children")
    pids = [master, *map(int, children.read_text().split())] if children.exists() else [master]

    def stop() -> None:
        subprocess.run([nginx, "-c", str(conf), "-s", "stop"], capture_output=True)

    return Target("nginx-dav", port, "/bench/", pids, stop)


# ---------------------------------------------------------------------------------------------- client
def request(conn: http.client.HTTPConnection, target: Target, method: str, path: str, body=None,  # type: ignore[no-untyped-def]
            headers: dict[str, str] | None = None, sink: bool = False) -> int:
    conn.request(method, quote(path, safe="/@"), body=body, headers={**target.auth(), **(headers or {})})
    response = conn.getresponse()
    if sink:
        while response.read(CHUNK):
            pass
    else:
        response.read()
    if response.status >= 400:
        raise RuntimeError(f"{target.name}: {method} {path} → {response.status}")
    return response.status


def small_files(target: Target, count: int, clients: int) -> None:
    body = os.urandom(4096)
    local = threading.local()

    def conn() -> http.client.HTTPConnection:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(HOST, target.port, timeout=120)
        return local.conn

    def put(i: int) -> None:
        request(conn(), target, "PUT", f"{target.base}small/f{i:05d}.bin", body[:-8] + i.to_bytes(8, "big"),
                {"Content-Type": "application/octet-stream"})

    def get(i: int) -> None:
        request(conn(), target, "GET", f"{target.base}small/f{i:05d}.bin")

    for phase, func in (("small PUT", put), ("small GET", get)):
        cpu = process_cpu.cpu_seconds(target.pids[0])
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(func, range(count)))
        target.results[f"{phase} req/s"] = count / (time.perf_counter() - started)
        # CPU the server spent per request: hardly affected by other load on a shared machine.
        target.results[f"{phase} server CPU ms"] = (process_cpu.cpu_seconds(target.pids[0]) - cpu) / count * 1000


def propfind(target: Target, rounds: int) -> None:
    conn = http.client.HTTPConnection(HOST, target.port, timeout=120)
    body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        request(conn, target, "PROPFIND", f"{target.base}small/", body,
                {"Depth": "1", "Content-Type": "application/xml"})
        times.append(time.perf_counter() - started)
    target.results["PROPFIND Depth 1 ms"] = statistics.median(times) * 1000


def large_body(source: Path, tag: int) -> Iterator[bytes]:
    yield tag.to_bytes(16, "big")  # every upload differs (Kantoor would otherwise dedupe the blob)
    with source.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class PeakMemory:
    def __init__(self, target: Target) -> None:
        self.target, self.peak, self._stop = target, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.target.rss_kib())
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def large_files(target: Target, source: Path, count: int) -> None:
    size = source.stat().st_size + 16
    conn = http.client.HTTPConnection(HOST, target.port, timeout=600)
    target.results["idle RSS MiB"] = target.rss_kib() / 1024
    with PeakMemory(target) as memory:
        cpu = process_cpu.cpu_seconds(target.pids[0])
        started = time.perf_counter()
        for i in range(count):
            request(conn, target, "PUT", f"{target.base}large/big{i:02d}.bin", large_body(source, i),
                    {"Content-Length": str(size), "Content-Type": "application/octet-stream"})
        target.results["large PUT MB/s"] = count * size / (time.perf_counter() - started) / 1e6
        target.results["large PUT server CPU ms/MB"] = (process_cpu.cpu_seconds(target.pids[0]) - cpu) / (
            count * size / 1e6) * 1000
        cpu = process_cpu.cpu_seconds(target.pids[0])
        started = time.perf_counter()
        for i in range(count):
            request(conn, target, "GET", f"{target.base}large/big{i:02d}.bin", sink=True)
        target.results["large GET MB/s"] = count * size / (time.perf_counter() - started) / 1e6
        target.results["large GET server CPU ms/MB"] = (process_cpu.cpu_seconds(target.pids[0]) - cpu) / (
            count * size / 1e6) * 1000
    target.results["peak RSS MiB"] = memory.peak / 1024


def huge_file(target: Target, source: Path, mib: int) -> None:
    """One ``mib`` MiB PUT and GET (bodies streamed on both sides): how far the server's memory grows."""
    repeats = max(1, mib * 1024 * 1024 // source.stat().st_size)
    size = repeats * source.stat().st_size + 16

    def body() -> Iterator[bytes]:
        yield (10**6).to_bytes(16, "big")
        for _ in range(repeats):
            with source.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

    conn = http.client.HTTPConnection(HOST, target.port, timeout=600)
    idle = target.rss_kib()
    with PeakMemory(target) as memory:
        request(conn, target, "PUT", f"{target.base}large/huge.bin", body(),
                {"Content-Length": str(size), "Content-Type": "application/octet-stream"})
        request(conn, target, "GET", f"{target.base}large/huge.bin", sink=True)
    target.results[f"{mib} MiB PUT+GET RSS growth MiB"] = max(memory.peak - idle, 0) / 1024


def run(target: Target, args: argparse.Namespace, source: Path) -> None:
    conn = http.client.HTTPConnection(HOST, target.port, timeout=60)
    for folder in ("", "small/", "large/"):
        request(conn, target, "MKCOL", target.base + folder)
    print(f"{target.name}: {args.small} small files …", flush=True)
    small_files(target, args.small, args.clients)
    propfind(target, args.propfind_rounds)
    print(f"{target.name}: {args.large} × {args.large_mib} MiB …", flush=True)
    large_files(target, source, args.large)
    if args.huge_mib:
        print(f"{target.name}: 1 × {args.huge_mib} MiB …", flush=True)
        huge_file(target, source, args.huge_mib)


def table(targets: list[Target]) -> str:
    kantoor = targets[0]
    metrics = list(kantoor.results)
    peers = targets[1:]
    header = ["metric", *(t.name for t in targets), *(f"kantoor/{p.name}" for p in peers)]
    rows = [header]
    for metric in metrics:
        row = [metric, *(f"{t.results.get(metric, float('nan')):.1f}" for t in targets)]
        for peer in peers:
            value = peer.results.get(metric)
            row.append(f"{kantoor.results[metric] / value:.2f}" if value else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="number of 4 KiB files")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--large", type=int, default=20, help="number of large files")
    parser.add_argument("--large-mib", type=int, default=50)
    parser.add_argument("--propfind-rounds", type=int, default=10)
    parser.add_argument("--huge-mib", type=int, default=1024,
                        help="size of the one file whose PUT and GET measure memory growth (0: skip)")
    parser.add_argument("--peers", default="wsgidav,nginx",
                        help="comma-separated: wsgidav (on Kantoor's HTTP host), wsgidav-stock (on uvicorn's h11 "
                             "and a2wsgi), nginx")
    args = parser.parse_args()
    if not (1 <= args.small <= 100_000 and 1 <= args.large <= 1000 and 1 <= args.large_mib <= 4096
            and 0 <= args.huge_mib <= 8192):
        parser.error("counts out of range")
    workdir = Path(tempfile.mkdtemp(prefix="kantoor-webdav-bench-"))
    source = workdir / "large.bin"
    with source.open("wb") as f:
        for _ in range(args.large_mib * 4):
            f.write(os.urandom(CHUNK))
    targets: list[Target] = []
    try:
        targets.append(start_kantoor())
        peers = {p.strip() for p in args.peers.split(",") if p.strip()}
        if "wsgidav" in peers and (peer := start_wsgidav(workdir)) is not None:
            targets.append(peer)
        if "wsgidav-stock" in peers and (peer := start_wsgidav(workdir, "stock")) is not None:
            targets.append(peer)
        if "nginx" in peers and (peer := start_nginx(workdir)) is not None:
            targets.append(peer)
        for target in targets:
            run(target, args, source)
    finally:
        for target in targets:
            if callable(target.stop):
                target.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"WebDAV: {args.small} × 4 KiB with {args.clients} clients, {args.large} × {args.large_mib} MiB, "
          f"PROPFIND Depth 1 of {args.small} files (median of {args.propfind_rounds})")
    print(table(targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
