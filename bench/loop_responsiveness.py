"""How much do large uploads slow down IMAP on the same process? (ARCHITECTURE invariant 3)

Runs one Kantoor, measures IMAP NOOP round trips idle, then while N clients upload
large files over WebDAV, and prints latency percentiles, the ratio loaded/idle,
upload throughput and the server's memory growth. Bounded in count and time;
talks to 127.0.0.1 only.

    python bench/loop_responsiveness.py [--uploads 4] [--size-mib 100] [--noops 300]
"""

from __future__ import annotations

import argparse
import base64
import imaplib
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import kantoor_process  # noqa: E402


def noop_latencies(port: int, login: str, password: str, count: int) -> list[float]:
    out: list[float] = []
    with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
        imap.login(login, password)
        for _ in range(count):
            t0 = time.perf_counter()
            imap.noop()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def upload(port: int, login: str, password: str, name: str, size: int, results: list[float]) -> None:
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    chunk = b"\x5a" * (1024 * 1024)
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall((f"PUT /files/{login}/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
                      f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode())
        sent = 0
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            sock.sendall(piece)
            sent += len(piece)
        status = sock.recv(64)
    elapsed = time.perf_counter() - t0
    if b" 201 " in status or b" 204 " in status:
        results.append(size / elapsed / 1e6)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--noops", type=int, default=300)
    args = parser.parse_args()

    server = kantoor_process.start()
    try:
        login, password = "bench@localhost", "loop responsiveness passphrase 7"
        server.add_user(login, password)
        idle = noop_latencies(server.ports["imap"], login, password, args.noops)
        rss_before = server.rss_kib()
        rates: list[float] = []
        threads = [threading.Thread(target=upload, args=(server.ports["http"], login, password, f"u{i}.bin",
                                                         args.size_mib * 1024 * 1024, rates))
                   for i in range(args.uploads)]
        peak = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], server.rss_kib())
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for t in threads:
            t.start()
        time.sleep(0.5)
        loaded = noop_latencies(server.ports["imap"], login, password, args.noops)
        for t in threads:
            t.join(300)
        done.set()
        print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
        for label, values in (("NOOP idle", idle), (f"NOOP, {args.uploads} uploads", loaded)):
            print(f"{label:24}{pct(values, .5):10.2f}{pct(values, .99):10.2f}{statistics.mean(values):10.2f}")
        print(f"ratio loaded/idle p50: {pct(loaded, .5) / pct(idle, .5):.1f}x, "
              f"p99: {pct(loaded, .99) / pct(idle, .99):.1f}x")
        print(f"upload throughput per client: {statistics.mean(rates) if rates else float('nan'):.1f} MB/s "
              f"({len(rates)}/{args.uploads} uploads completed)")
        print(f"server RSS: {rss_before / 1024:.0f} MiB before, peak {peak[0] / 1024:.0f} MiB during uploads "
              f"(+{(peak[0] - rss_before) / 1024:.0f} MiB)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
