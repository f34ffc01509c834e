"""SMTP benchmark: inbound mail into Kantoor vs. a private Postfix (delivering to Maildir), one run.

Both servers get the same N realistic messages (default 2,000; 5–50 KiB, multipart with
attachments, non-ASCII headers, from ``mail_corpus.py`` and --seed) over C concurrent SMTP
connections (default 8; each connection sends its share one transaction after another, as
an MTA reusing a connection does), on 127.0.0.1, to one local recipient. The clock runs
from the first connect until every message is *visible*:

- Kantoor: the INBOX message count over IMAP (``STATUS INBOX (MESSAGES)``), polled;
- Postfix: the number of files in the recipient's Maildir ``new/`` (virtual(8) delivery), polled.

Printed: messages accepted per second (last ``250`` after DATA), delivered (visible) messages
per second, and the ratio Kantoor/Postfix (>1: Kantoor faster); also the CPU time each server's
whole process tree used per message (``process_cpu.py``: Kantoor's one process; Postfix's master
with smtpd, cleanup, qmgr, trivial-rewrite, virtual…), steadier than wall-clock rates on a
shared, loaded machine, counted until the server is idle again after a round (work a server
leaves for after its replies, as Kantoor's search indexing, costs CPU too; the next round,
of either server, starts only then). Kantoor's MX checks SPF, DKIM
and DMARC on every message; its DNS is pointed at ``null_dns.py`` (a loopback server answering
NXDOMAIN at once, like a warm local resolver) unless --system-dns. Kantoor keeps the answers in
its resolver's TTL-respecting cache (dnspython's; an NXDOMAIN without an SOA counts for 300 s), so
with the corpus's few sender domains most checks are answered from it: the queries that reached
``null_dns.py`` per message are printed. Postfix runs with its defaults (no SPF/DKIM checks,
``in_flow_delay = 1s``).

Postfix (Debian ``postfix``) runs as a private instance: its own config_directory,
queue_directory and data_directory under a temporary directory, smtpd on an ephemeral port on
127.0.0.1, virtual delivery to a Maildir, started with ``postfix -c DIR start`` and stopped at the
end (``postfix_process.py``); the system Postfix service is not used and stays stopped.

How to run (as root, from the repository; the system Postfix service is not needed and may stay stopped):

    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix        # once
    .venv/bin/python bench/smtp.py                                     # 2,000 messages, 8 connections (~5 min)
    .venv/bin/python bench/smtp.py --rounds 3                          # alternating rounds, median
    .venv/bin/python bench/smtp.py --messages 500 --servers kantoor    # Kantoor alone, e.g. under py-spy
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kantoor_process  # noqa: E402
import kantoor_source  # noqa: E402
import mail_corpus  # noqa: E402
import null_dns  # noqa: E402
import postfix_process  # noqa: E402
import process_cpu  # noqa: E402
from imap_wire import Wire  # noqa: E402

HOST = "127.0.0.1"
KANTOOR_USER, KANTOOR_PASSWORD = "bench@localhost", "Qx7-harbor-lamp-2291"
POSTFIX_USER, POSTFIX_DOMAIN = "bench", "bench.example"
POLL_SECONDS = 0.1


@dataclass
class Target:
    name: str
    smtp_port: int
    recipient: str
    visible: Callable[[], int]  # messages the recipient can see now
    how: str  # how visibility is measured, for the output
    stop: Callable[[], None]
    pid: int
    accepted: list[float] = field(default_factory=list)  # msg/s per round
    delivered: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # server CPU (whole process tree) per message, per round
    dns_per_message: list[float] = field(default_factory=list)  # queries null_dns.py answered, per round


# ---------------------------------------------------------------------------------------------- servers
def start_kantoor(database_url: str, dns_port: int | None) -> Target:
    if dns_port is not None:
        os.environ["KANTOOR_DELIVERY_DNS_NAMESERVERS"] = f"{HOST}:{dns_port}"
    server = kantoor_process.start(database_url)
    try:
        server.add_user(KANTOOR_USER, KANTOOR_PASSWORD, plan="professional")
        wire = Wire(server.ports["imap"], timeout=60)
        wire.login(KANTOOR_USER, KANTOOR_PASSWORD)
    except BaseException:
        server.stop()
        raise
    lock = threading.Lock()

    def visible() -> int:
        with lock:
            reply = wire.command("STATUS INBOX (MESSAGES)")
        words = reply.untagged[0].replace(b"(", b" ").replace(b")", b" ").split()
        return int(words[words.index(b"MESSAGES") + 1])

    def stop() -> None:
        wire.close()
        server.stop()

    return Target("kantoor", server.ports["smtp"], KANTOOR_USER, visible, "IMAP STATUS INBOX (MESSAGES)", stop,
                  server.process.pid)


def start_postfix(workdir: Path) -> Target:
    postfix = postfix_process.start(workdir / "postfix", POSTFIX_USER, POSTFIX_DOMAIN)
    return Target("postfix", postfix.port, f"{POSTFIX_USER}@{POSTFIX_DOMAIN}", postfix.delivered,
                  "files in the Maildir's new/", postfix.stop, postfix.master_pid())


# ---------------------------------------------------------------------------------------------- the run
def _generate(job: tuple[int, int, int]) -> list[bytes]:
    seed, start, stop = job
    return [mail_corpus.message(seed, i, to="recipient@bench.example") for i in range(start, stop)]


def corpus(seed: int, total: int) -> list[bytes]:
    with ProcessPoolExecutor(2) as pool:
        jobs = [(seed, start, min(total, start + 250)) for start in range(0, total, 250)]
        return [raw for batch in pool.map(_generate, jobs) for raw in batch]


def send_all(target: Target, messages: list[bytes], connections: int, time_limit: float) -> tuple[float, float]:
    """Send every message over ``connections`` parallel sessions; (seconds until all accepted, until all visible)."""
    before = target.visible()
    errors: list[BaseException] = []
    deadline = time.monotonic() + time_limit

    def sender(n: int) -> None:
        try:
            with smtplib.SMTP(HOST, target.smtp_port, local_hostname="client.bench.example", timeout=120) as smtp:
                for i in range(n, len(messages), connections):
                    if time.monotonic() > deadline:
                        raise TimeoutError("--time-limit reached while sending")
                    refused = smtp.sendmail(f"sender{i % 50}@mail.example", [target.recipient], messages[i])
                    if refused:
                        raise RuntimeError(f"{target.name} refused {refused}")
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    accepted_at = visible_at = 0.0
    want = before + len(messages)
    while time.monotonic() < deadline:
        if not accepted_at and not any(t.is_alive() for t in threads):
            accepted_at = time.perf_counter() - started
            if errors:
                raise errors[0]
        seen = target.visible()
        if seen >= want:
            visible_at = time.perf_counter() - started
            break
        time.sleep(POLL_SECONDS)
    for thread in threads:
        thread.join(5)
    if errors:
        raise errors[0]
    if not visible_at:
        raise TimeoutError(f"{target.name}: only {target.visible() - before} of {len(messages)} visible in time")
    seen = target.visible()
    if seen != want:
        raise RuntimeError(f"{target.name}: {seen - before} messages visible, {len(messages)} sent")
    return accepted_at or visible_at, visible_at


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="rounds per server, alternating (median reported)")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--servers", default="kantoor,postfix", help="comma-separated: kantoor,postfix")
    parser.add_argument("--database-url", default="", help="Kantoor's database (default: SQLite in a temp dir)")
    parser.add_argument("--kantoor-tree", default="", help="run Kantoor from this source tree (see kantoor_source.py)")
    parser.add_argument("--system-dns", action="store_true", help="let Kantoor use the system resolver")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds per server and round")
    args = parser.parse_args()
    source = kantoor_source.use_tree(args.kantoor_tree) if args.kantoor_tree else "installed (.venv)"
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if not 1 <= args.messages <= 100_000 or not 1 <= args.connections <= 64 or not 1 <= args.rounds <= 10:
        parser.error("--messages 1..100000, --connections 1..64, --rounds 1..10")
    if not names or not set(names) <= {"kantoor", "postfix"}:
        parser.error("--servers: kantoor and/or postfix")
    if "postfix" in names and (why := postfix_process.missing()):
        print(f"postfix: {why}", file=sys.stderr)
        return 2
    load_before = load()
    print(f"load average before: {load_before}; generating {args.messages * args.rounds:,} messages …", flush=True)
    rounds = [corpus(args.seed + r, args.messages) for r in range(args.rounds)]
    workdir = Path(tempfile.mkdtemp(prefix="kantoor-smtp-bench-"))
    os.chmod(workdir, 0o755)  # Postfix's unprivileged processes must reach their queue
    dns = None if args.system_dns else null_dns.NullDns()
    targets: list[Target] = []
    loads: list[str] = []
    try:
        for name in names:
            targets.append(start_kantoor(args.database_url, dns.port if dns else None) if name == "kantoor"
                           else start_postfix(workdir))
            print(f"{name}: pid {targets[-1].pid}, SMTP port {targets[-1].smtp_port}", flush=True)
        for r, messages in enumerate(rounds):
            for target in targets if r % 2 == 0 else reversed(targets):
                print(f"round {r + 1}: {target.name} (load {load()}) …", flush=True)
                cpu = process_cpu.cpu_seconds(target.pid)
                queries = dns.queries if dns else 0
                accepted, visible = send_all(target, messages, args.connections, args.time_limit)
                settled = process_cpu.wait_idle(target.pid, args.time_limit)
                cpu = process_cpu.cpu_seconds(target.pid) - cpu
                # The round's dirty pages (Kantoor's database, Postfix's queue and Maildir files) are written out
                # before the next round, untimed: left to the kernel's writeback, they made the next server's
                # fsyncs wait (ext4 commits them together), so a round ran slower after the other server's.
                os.sync()
                if dns and target.name == "kantoor":
                    target.dns_per_message.append((dns.queries - queries) / len(messages))
                target.accepted.append(len(messages) / accepted)
                target.delivered.append(len(messages) / visible)
                target.cpu_ms.append(cpu / len(messages) * 1000)
                print(f"  accepted in {accepted:.1f} s, visible in {visible:.1f} s, idle {settled:.1f} s later, "
                      f"server CPU {cpu:.1f} s (until idle)", flush=True)
                loads.append(load())
    finally:
        for target in targets:
            target.stop()
        if dns:
            dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    sizes = [len(m) for m in rounds[0]]
    print()
    print(f"SMTP inbound on 127.0.0.1: {args.messages:,} messages (5-50 KiB, mean {sum(sizes) / len(sizes) / 1024:.1f} "
          f"KiB, seed {args.seed}) over {args.connections} concurrent connections, one recipient; "
          f"median of {args.rounds} round(s); Kantoor database: {args.database_url or 'SQLite'}; "
          f"Kantoor source: {source}; "
          f"Kantoor DNS: {'system resolver' if args.system_dns else 'loopback NXDOMAIN server (null_dns.py)'}"
          + "".join(f", {statistics.median(t.dns_per_message):.2f} queries/message reached it"
                    for t in targets if t.dns_per_message))
    print(f"load average (1/5/15 min) before: {load_before}; after each run: {' | '.join(loads)}; "
          f"CPUs: {os.cpu_count()}")
    rows = [["server", "accepted msg/s", "delivered msg/s", "server CPU ms/msg", "visible when"]]
    for t in targets:
        rows.append([t.name, f"{statistics.median(t.accepted):.1f}", f"{statistics.median(t.delivered):.1f}",
                     f"{statistics.median(t.cpu_ms):.2f}", t.how])
    if args.rounds > 1:  # the spread between rounds: on a shared VM the peers' rates move a lot
        for t in targets:
            rows.append([f"  {t.name} min-max", f"{min(t.accepted):.0f}-{max(t.accepted):.0f}",
                         f"{min(t.delivered):.0f}-{max(t.delivered):.0f}", f"{min(t.cpu_ms):.2f}-{max(t.cpu_ms):.2f}",
                         ""])
    by_name = {t.name: t for t in targets}
    if "kantoor" in by_name and "postfix" in by_name:
        k, p = by_name["kantoor"], by_name["postfix"]
        rows.append(["kantoor/postfix", f"{statistics.median(k.accepted) / statistics.median(p.accepted):.2f}",
                     f"{statistics.median(k.delivered) / statistics.median(p.delivered):.2f}",
                     f"{statistics.median(k.cpu_ms) / statistics.median(p.cpu_ms):.2f}",
                     "(CPU: >1 = Kantoor uses more)"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
