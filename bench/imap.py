"""IMAP benchmark: Kantoor side by side with a private Dovecot (Maildir) in one run.

For every mailbox size (default 1,000 and 10,000 messages) and every server, on 127.0.0.1:

- APPEND of the N messages into a new mailbox, one session (LITERAL+ where offered), msg/s;
- SELECT of that mailbox (median of --rounds);
- ``FETCH 1:* (FLAGS ENVELOPE)``: the first one (cold: Dovecot builds its cache) and the median;
- ``SEARCH SUBJECT "quarterly"`` (hits 1 %) and ``SEARCH HEADER Message-ID "<…>"`` (hits 1);
- ``UID FETCH <100 random UIDs> (BODY.PEEK[])`` from 8 concurrent sessions, --rounds each, msg/s;
- ``STORE 1:* +FLAGS (\\Flagged)`` (median; the flag is removed again between rounds, untimed).

Messages are realistic and the same for both servers: 5–50 KiB (log-uniform), multipart
(alternative or mixed with PDF/CSV/PNG attachments), RFC 2047 non-ASCII headers, generated
from --seed by ``mail_corpus.py``; each mailbox's copy gets its own ``X-Bench-Copy:`` header so
no server can share bodies between mailboxes. Responses are read by ``imap_wire.py`` (no
per-line parsing) so client work does not hide server differences. Each server's answer is
checked (EXISTS, FETCH and SEARCH counts) so a fast wrong answer cannot win.

Dovecot (Debian ``dovecot-imapd``) runs as a private instance: own config, base_dir, passwd-file
user and Maildir under a temporary directory, an ephemeral port on 127.0.0.1, started and
stopped by this script (``dovecot_process.py``); the system service is not used. Kantoor runs
``kantoor serve`` on SQLite in a temporary data dir (``--database-url`` for PostgreSQL).

The "speed" ratio is how many times faster Kantoor is by the wall clock (>1: Kantoor faster):
throughput Kantoor/Dovecot, or time Dovecot/Kantoor. Beside it, the CPU time each server's
whole process tree spent (``process_cpu.py``: Kantoor's one process, Dovecot's master and its
imap/auth children) per message the operation touches (the mailbox size for SELECT, FETCH 1:*,
SEARCH and STORE; the messages appended or fetched otherwise), and the CPU ratio
Dovecot/Kantoor (>1: Kantoor spends less). On a shared, loaded machine the CPU columns are
the steadier comparison. The last table divides each size's per-message cost by the
smallest size's: x1.00 everywhere means cost linear in the messages touched, below 1 sub-linear.

How to run (as root, from the repository; Debian's dovecot service is not needed and may stay stopped):

    DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-imapd     # once
    .venv/bin/python bench/imap.py                 # 1,000 and 10,000 messages: ~15 min on 2 busy cores
    .venv/bin/python bench/imap.py --sizes 1000,10000,50000 --time-limit 7200   # the full run: about an hour
    .venv/bin/python bench/imap.py --servers kantoor --sizes 10000   # Kantoor alone, e.g. under py-spy
    git archive HEAD kantoor | tar -x -C /tmp/k && .venv/bin/python bench/imap.py --kantoor-tree /tmp/k  # a commit
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dovecot_process  # noqa: E402
import kantoor_process  # noqa: E402
import kantoor_source  # noqa: E402
import mail_corpus  # noqa: E402
import process_cpu  # noqa: E402
from imap_wire import Wire, count, exists, search_hits  # noqa: E402

USER, PASSWORD = "bench@localhost", "Qx7-harbor-lamp-2291"
FETCH_SESSIONS, FETCH_BATCH = 8, 100


@dataclass
class Server:
    name: str
    port: int
    stop: Callable[[], None]
    pid: int


@dataclass
class Result:
    value: float  # in the operation's unit
    per_message_us: float  # wall-clock time per message the operation touches
    cpu_per_message_us: float  # server CPU time (whole process tree) per message touched
    note: str = ""


@dataclass
class Operation:
    name: str
    unit: str  # "msg/s" (higher is better) or "ms" (lower is better)


OPERATIONS = [
    Operation("APPEND (1 session)", "msg/s"),
    Operation("SELECT", "ms"),
    Operation("FETCH 1:* (FLAGS ENVELOPE) first", "ms"),
    Operation("FETCH 1:* (FLAGS ENVELOPE)", "ms"),
    Operation('SEARCH SUBJECT "quarterly"', "ms"),
    Operation("SEARCH HEADER Message-ID", "ms"),
    Operation(f"UID FETCH {FETCH_BATCH} BODY[] x{FETCH_SESSIONS} sessions", "msg/s"),
    Operation("STORE 1:* +FLAGS (\\Flagged)", "ms"),
]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"--time-limit reached during {what}")


# ---------------------------------------------------------------------------------------------- corpus
def _generate(job: tuple[int, int, int]) -> list[bytes]:
    seed, start, stop = job
    return [mail_corpus.message(seed, i) for i in range(start, stop)]


class Corpus:
    """The first N messages of a seed, generated once (in 2 processes) into one file."""

    def __init__(self, path: Path, seed: int, total: int) -> None:
        self.path, self.offsets = path, [0]
        step = 500
        with path.open("wb") as out, ProcessPoolExecutor(2) as pool:
            jobs = [(seed, start, min(total, start + step)) for start in range(0, total, step)]
            for batch in pool.map(_generate, jobs):
                for raw in batch:
                    out.write(raw)
                    self.offsets.append(self.offsets[-1] + len(raw))
        self.file = path.open("rb")

    def get(self, index: int) -> bytes:
        self.file.seek(self.offsets[index])
        return self.file.read(self.offsets[index + 1] - self.offsets[index])

    def mean_kib(self, n: int) -> float:
        return self.offsets[n] / n / 1024


# ---------------------------------------------------------------------------------------------- servers
def start_kantoor(database_url: str) -> Server:
    server = kantoor_process.start(database_url)
    try:
        server.add_user(USER, PASSWORD, plan="professional")
    except BaseException:
        server.stop()
        raise
    return Server("kantoor", server.ports["imap"], server.stop, server.process.pid)


def start_dovecot(workdir: Path) -> Server:
    dovecot = dovecot_process.start(workdir / "dovecot", USER, PASSWORD)
    return Server("dovecot", dovecot.port, dovecot.stop, dovecot.process.pid)


# ---------------------------------------------------------------------------------------------- operations
def session(server: Server) -> Wire:
    wire = Wire(server.port)
    wire.login(USER, PASSWORD)
    return wire


def expect(what: str, got: int, want: int) -> None:
    if got != want:
        raise RuntimeError(f"{what}: expected {want}, got {got}")


def timed_rounds(server: Server, rounds: int, deadline: Deadline, what: str, once: Callable[[], float],
                 between: Callable[[], None] = lambda: None) -> list[tuple[float, float]]:
    """(wall seconds the command took, server CPU seconds meanwhile) per round; ``between`` is not counted."""
    times = []
    for _ in range(rounds):
        deadline.check(what)
        cpu = process_cpu.cpu_seconds(server.pid)
        wall = once()
        times.append((wall, process_cpu.cpu_seconds(server.pid) - cpu))
        between()
    return times


def measure(server: Server, size: int, corpus: Corpus, args: argparse.Namespace,
            deadline: Deadline) -> dict[str, Result]:
    mailbox = f"bench{size}"
    copy_header = f"X-Bench-Copy: {mailbox}\r\n".encode()
    out: dict[str, Result] = {}
    wire = session(server)
    try:
        wire.command(f"CREATE {mailbox}")
        cpu = process_cpu.cpu_seconds(server.pid)
        started = time.perf_counter()
        for i in range(size):
            if i % 200 == 0:
                deadline.check(f"{server.name} APPEND")
            wire.append(mailbox, copy_header + corpus.get(i), "\\Seen" if i % 3 else "")
        elapsed = time.perf_counter() - started
        process_cpu.wait_idle(server.pid, 120)  # what the server does after its OKs (search indexing) counts here
        cpu = process_cpu.cpu_seconds(server.pid) - cpu
        out["APPEND (1 session)"] = Result(size / elapsed, elapsed / size * 1e6, cpu / size * 1e6)
        print(f"  {server.name}: appended {size} in {elapsed:.1f} s", flush=True)

        close = "UNSELECT" if b"UNSELECT" in wire.capabilities else "CLOSE"

        def select() -> float:
            reply = wire.command(f"SELECT {mailbox}")
            expect(f"{server.name} SELECT EXISTS", exists(reply), size)
            return reply.seconds

        times = timed_rounds(server, args.rounds, deadline, "SELECT", select, lambda: wire.command(close) and None)
        out["SELECT"] = per_mailbox(times, size)
        select()

        def fetch_envelopes() -> float:
            reply = wire.command("FETCH 1:* (FLAGS ENVELOPE)")
            expect(f"{server.name} FETCH ENVELOPE responses", count(reply, b"FETCH"), size)
            return reply.seconds

        times = timed_rounds(server, args.rounds + 1, deadline, "FETCH ENVELOPE", fetch_envelopes)
        out["FETCH 1:* (FLAGS ENVELOPE) first"] = per_mailbox(times[:1], size)
        out["FETCH 1:* (FLAGS ENVELOPE)"] = per_mailbox(times[1:], size)

        want = sum(1 for i in range(size) if i % 100 == mail_corpus.NEEDLE_EVERY)
        msgid = mail_corpus.message_id(args.seed, size // 2)
        for name, command, hits in ((f'SEARCH SUBJECT "{mail_corpus.NEEDLE}"', f'SEARCH SUBJECT "{mail_corpus.NEEDLE}"',
                                     want),
                                    ("SEARCH HEADER Message-ID", f'SEARCH HEADER Message-ID "{msgid}"', 1)):
            def search(command: str = command, hits: int = hits) -> float:
                reply = wire.command(command)
                expect(f"{server.name} {command} hits", len(search_hits(reply)), hits)
                return reply.seconds

            out[name] = per_mailbox(timed_rounds(server, args.rounds, deadline, name, search), size)

        uids = search_hits(wire.command("UID SEARCH ALL"))
        expect(f"{server.name} UIDs", len(uids), size)
        out[f"UID FETCH {FETCH_BATCH} BODY[] x{FETCH_SESSIONS} sessions"] = concurrent_fetch(
            server, mailbox, uids, args, deadline)

        def store() -> float:
            reply = wire.command("STORE 1:* +FLAGS (\\Flagged)")
            expect(f"{server.name} STORE responses", count(reply, b"FETCH"), size)
            return reply.seconds

        times = timed_rounds(server, args.rounds, deadline, "STORE", store,
                             lambda: wire.command("STORE 1:* -FLAGS.SILENT (\\Flagged)") and None)
        out["STORE 1:* +FLAGS (\\Flagged)"] = per_mailbox(times, size)
    finally:
        wire.close()
    return out


def per_mailbox(times: list[tuple[float, float]], size: int) -> Result:
    wall = statistics.median(t for t, _ in times)
    cpu = statistics.median(c for _, c in times)
    return Result(wall * 1000, wall / size * 1e6, cpu / size * 1e6)


def concurrent_fetch(server: Server, mailbox: str, uids: list[int], args: argparse.Namespace,
                     deadline: Deadline) -> Result:
    """8 sessions each UID FETCH --rounds batches of 100 random messages' full bodies at the same time."""
    rng = random.Random(f"{args.seed}:fetch:{len(uids)}")
    plans = [[sorted(rng.sample(uids, min(FETCH_BATCH, len(uids)))) for _ in range(args.rounds)]
             for _ in range(FETCH_SESSIONS)]
    wires = [session(server) for _ in range(FETCH_SESSIONS)]
    for wire in wires:
        wire.command(f"SELECT {mailbox}")
    barrier = threading.Barrier(FETCH_SESSIONS + 1, timeout=300)
    errors: list[BaseException] = []
    fetched = [0] * FETCH_SESSIONS
    nbytes = [0] * FETCH_SESSIONS

    def run(n: int) -> None:
        try:
            barrier.wait()
            for batch in plans[n]:
                deadline.check("UID FETCH")
                reply = wires[n].command("UID FETCH " + ",".join(map(str, batch)) + " (BODY.PEEK[])")
                expect(f"{server.name} UID FETCH responses", count(reply, b"FETCH"), len(batch))
                fetched[n] += len(batch)
                nbytes[n] += reply.nbytes
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(FETCH_SESSIONS)]
    for thread in threads:
        thread.start()
    cpu = process_cpu.cpu_seconds(server.pid)
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=max(1.0, deadline.end - time.monotonic()))
    elapsed = time.perf_counter() - started
    cpu = process_cpu.cpu_seconds(server.pid) - cpu
    for wire in wires:
        wire.close()
    if errors:
        raise errors[0]
    total = sum(fetched)
    return Result(total / elapsed, elapsed / total * 1e6, cpu / total * 1e6, f"{sum(nbytes) / elapsed / 1e6:.1f} MB/s")


# ---------------------------------------------------------------------------------------------- output
def ratio(op: Operation, kantoor: Result | None, peer: Result | None) -> str:
    if kantoor is None or peer is None or not kantoor.value or not peer.value:
        return "-"
    value = kantoor.value / peer.value if op.unit == "msg/s" else peer.value / kantoor.value
    return f"{value:.2f}"


def cpu_ratio(kantoor: Result | None, peer: Result | None) -> str:
    """Peer CPU / Kantoor CPU per message: >1 means Kantoor spends less CPU."""
    if kantoor is None or peer is None or kantoor.cpu_per_message_us <= 0:
        return "-"
    return f"{peer.cpu_per_message_us / kantoor.cpu_per_message_us:.2f}"


def render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i <= 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def table(results: dict[int, dict[str, dict[str, Result]]], names: list[str]) -> str:
    peers = [n for n in names if n != "kantoor"]
    header = ["size", "operation", "unit", *names, *(f"kantoor/{p} speed" for p in peers),
              *(f"{n} CPU µs/msg" for n in names), *(f"kantoor/{p} CPU" for p in peers)]
    rows = [header]
    for size, by_server in results.items():
        for op in OPERATIONS:
            cells = [by_server.get(n, {}).get(op.name) for n in names]
            if not any(cells):
                continue
            rows.append([
                f"{size:,}", op.name, op.unit,
                *(f"{c.value:,.1f}" if c else "-" for c in cells),
                *(ratio(op, by_server.get("kantoor", {}).get(op.name), by_server.get(p, {}).get(op.name))
                  for p in peers),
                *(f"{c.cpu_per_message_us:,.1f}" if c else "-" for c in cells),
                *(cpu_ratio(by_server.get("kantoor", {}).get(op.name), by_server.get(p, {}).get(op.name))
                  for p in peers),
            ])
    return render(rows)


def growth(results: dict[int, dict[str, dict[str, Result]]], names: list[str]) -> str:
    """Wall and CPU µs per message at each size divided by the same at the smallest size."""
    sizes = list(results)
    rows = [["server", "operation", *(f"{s:,} wall/CPU" for s in sizes)]]
    for name in names:
        for op in OPERATIONS:
            base = results[sizes[0]].get(name, {}).get(op.name)
            if base is None or not base.per_message_us:
                continue
            cells = []
            for size in sizes:
                r = results[size].get(name, {}).get(op.name)
                cpu = f"x{r.cpu_per_message_us / base.cpu_per_message_us:.2f}" if r and base.cpu_per_message_us else "-"
                cells.append(f"x{r.per_message_us / base.per_message_us:.2f} / {cpu}" if r else "-")
            rows.append([name, op.name, *cells])
    return render(rows)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated mailbox sizes (e.g. 1000,10000,50000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per timed operation (median reported)")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--servers", default="kantoor,dovecot", help="comma-separated: kantoor,dovecot")
    parser.add_argument("--database-url", default="", help="Kantoor's database (default: SQLite in a temp dir)")
    parser.add_argument("--kantoor-tree", default="", help="run Kantoor from this source tree (see kantoor_source.py)")
    parser.add_argument("--time-limit", type=float, default=3600, help="seconds for the whole run")
    args = parser.parse_args()
    source = kantoor_source.use_tree(args.kantoor_tree) if args.kantoor_tree else "installed (.venv)"
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if not sizes or not all(100 <= s <= 200_000 for s in sizes) or not 1 <= args.rounds <= 50:
        parser.error("sizes must be 100..200000, rounds 1..50")
    if not set(names) <= {"kantoor", "dovecot"} or not names:
        parser.error("--servers: kantoor and/or dovecot")
    if "dovecot" in names and (why := dovecot_process.missing()):
        print(f"dovecot: {why}", file=sys.stderr)
        return 2
    deadline = Deadline(args.time_limit)
    workdir = Path(tempfile.mkdtemp(prefix="kantoor-imap-bench-"))
    os.chmod(workdir, 0o755)  # Dovecot's unprivileged processes must reach their files
    load_before = load()
    print(f"load average before: {load_before}; generating {max(sizes):,} messages (seed {args.seed}) …", flush=True)
    corpus = Corpus(workdir / "corpus.bin", args.seed, max(sizes))
    servers: list[Server] = []
    results: dict[int, dict[str, dict[str, Result]]] = {}
    loads: list[str] = []
    try:
        for name in names:
            servers.append(start_kantoor(args.database_url) if name == "kantoor" else start_dovecot(workdir))
            print(f"{name}: pid {servers[-1].pid}, IMAP port {servers[-1].port}", flush=True)
        for size in sizes:
            results[size] = {}
            for server in servers:  # sizes outer, servers inner: both see the same machine load
                print(f"size {size:,}: {server.name} (load {load()}) …", flush=True)
                results[size][server.name] = measure(server, size, corpus, args, deadline)
                loads.append(load())
            if len(sizes) > 1:  # a long run shows each size as it completes
                print(table({size: results[size]}, [s.name for s in servers]), flush=True)
    finally:
        for server in servers:
            server.stop()
        corpus.file.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"IMAP on 127.0.0.1: one account, messages 5-50 KiB (mean {corpus.mean_kib(max(sizes)):.1f} KiB, "
          f"multipart, attachments, non-ASCII headers, seed {args.seed}); median of {args.rounds} rounds; "
          f"Kantoor database: {args.database_url or 'SQLite'}; "
          f"Kantoor source: {source}; Dovecot: Maildir, default settings")
    print(f"load average (1/5/15 min) before: {load_before}; after each server+size: {' | '.join(loads)}; "
          f"CPUs: {os.cpu_count()}")
    print(table(results, [s.name for s in servers]))
    fetch = f"UID FETCH {FETCH_BATCH} BODY[] x{FETCH_SESSIONS} sessions"
    notes = [f"{name} {fetch} at {size:,}: {r[name][fetch].note}" for size, r in results.items() for name in r
             if fetch in r[name]]
    print("; ".join(notes))
    if len(sizes) > 1:
        print()
        print("per-message cost (wall / server CPU) relative to the smallest mailbox (x1.00 = constant per message):")
        print(growth(results, [s.name for s in servers]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
