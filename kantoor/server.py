"""``kantoor serve``: every listener in one process, on one asyncio loop.

(With ``server.processes`` > 1, kantoor.prefork runs several such processes on
the same listening sockets, which they share out through kantoor.accept_balance;
each is the server described here.)

Twisted's asyncioreactor is installed on the loop first (IMAP runs on Twisted),
uvicorn serves the HTTP dispatcher on the HTTP and HTTPS ports, aiosmtpd serves
SMTP. Blocking work goes to the loop's default executor (sized from settings)
and to Twisted's thread pool. SIGTERM/SIGINT stop the listeners, let requests in
flight finish, then stop the reactor, which ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kantoor.accept_balance import Balancing
from kantoor.config import Settings
from kantoor.core import Core, open_core
from kantoor.listening import bind_all, bound_port
from kantoor.tls import TLSFiles, ensure_certificate, server_ssl_context

log = logging.getLogger("kantoor.server")


@dataclass
class Bootstrap:
    """What the first start created, to print once."""

    admin_login: str = ""
    admin_password: str = ""


@dataclass
class Running:
    ports: dict[str, int] = field(default_factory=dict)
    closers: list[Any] = field(default_factory=list)


def bootstrap_admin(core: Core) -> Bootstrap:
    """On an empty database: the first mail domain and an administrator with a one-time password."""
    from kantoor.auth import generate_password, hash_password

    settings = core.settings
    if core.store.count_accounts() > 0:
        return Bootstrap()
    domain = settings.server.mail_domain
    if not core.store.is_local_domain(domain):
        core.store.add_domain(domain)
    # Its DKIM key, as `kantoor domain add` makes one: the server's own mail (bounces, warnings) is signed.
    from kantoor.smtpd.dkim_keys import generate_key

    generate_key(settings.data_dir, domain)
    login = f"admin@{domain}"
    password = generate_password()
    core.store.create_account(login, hash_password(password), settings.accounts.admin_plan, role="admin",
                              first_name="Administrator", must_change_password=True)
    # RFC 5321 §4.5.1: a mail server must accept mail for postmaster.
    core.store.add_alias(login, f"postmaster@{domain}")
    return Bootstrap(login, password)


def _http_protocol() -> Any:
    """The HTTP/1.1 implementation for uvicorn: bounded httptools if installed, else h11."""
    try:
        from kantoor.davserver.http_protocol import BoundedHeadProtocol
    except ImportError:  # httptools missing
        return "h11"
    return BoundedHeadProtocol


def _uvicorn_server(app: Any, settings: Settings, port: int, tls: TLSFiles | None) -> Any:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        # Signals belong to the Kantoor process, not to one of its listeners.
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        server_header=False,
        ssl_certfile=str(tls.certificate) if tls else None,
        ssl_keyfile=str(tls.private_key) if tls else None,
        # httptools with a bound on the request head (431 past 64 KiB, see
        # kantoor.davserver.http_protocol): faster than h11 on uploads and on small
        # requests (bench/webdav.py). h11, which refuses a head over the same size
        # itself, where httptools is not installed.
        http=_http_protocol(),
        h11_max_incomplete_event_size=64 * 1024,
    )
    return EmbeddedServer(config)


async def _start_http(core: Core, tls: TLSFiles, sockets: dict[str, socket.socket], running: Running,
                      balancing: Balancing | None) -> None:
    from kantoor.davserver import build_app

    settings = core.settings
    app = build_app(settings, core.store, core.authenticator, core.quota)
    for name, files in (("http", None), ("https", tls)):
        sock = sockets[name]
        server = _uvicorn_server(app, settings, bound_port(sock), files)
        # Balanced (several processes): uvicorn runs without a socket of its own (its ticks, timeouts and
        # shutdown of open connections as ever) and gets the connections this process accepts.
        task = asyncio.create_task(server.serve(sockets=[] if balancing else [sock]), name=f"uvicorn-{name}")
        while not server.started:
            if task.done():
                task.result()  # raises the bind error
                raise RuntimeError(f"{name} listener stopped during start-up")
            await asyncio.sleep(0.02)
        running.ports[name] = bound_port(sock)
        listener = None
        if balancing is not None:
            listener = balancing.serve_asyncio(sock, _uvicorn_protocol_factory(server), server.config.ssl)

        async def close(server: Any = server, task: asyncio.Task[None] = task, listener: Any = listener) -> None:
            if listener is not None:
                listener.close()
            server.should_exit = True
            await task

        running.closers.append(close)


def _uvicorn_protocol_factory(server: Any) -> Callable[[], asyncio.Protocol]:
    """One protocol per connection, built as uvicorn's own listener builds them (``Server.startup``)."""
    config = server.config

    def create_protocol() -> asyncio.Protocol:
        return config.http_protocol_class(config=config, server_state=server.server_state,  # type: ignore[no-any-return]
                                          app_state=server.lifespan.state)
    return create_protocol


async def _start_imap(core: Core, tls: TLSFiles, sockets: dict[str, socket.socket], running: Running,
                      balancing: Balancing | None) -> None:
    from twisted.internet import reactor

    from kantoor.imapd import listen

    settings = core.settings
    ports = listen(reactor, settings, core.store, core.authenticator, core.quota, tls.certificate, tls.private_key,
                   sockets, balancing)
    for name, port in ports:
        running.ports[name] = port.getHost().port

        async def close(port: Any = port) -> None:
            from twisted.internet.defer import maybeDeferred

            await maybeDeferred(port.stopListening).asFuture(asyncio.get_running_loop())

        running.closers.append(close)


async def _start_smtp(core: Core, tls: TLSFiles, sockets: dict[str, socket.socket], running: Running,
                      balancing: Balancing | None) -> None:
    from kantoor.smtpd import start

    settings = core.settings
    servers = await start(settings, core.store, core.authenticator, core.quota, server_ssl_context(tls), sockets,
                          balancing=balancing)
    for name, server in servers:
        running.ports[name] = bound_port(sockets[name])

        async def close(server: Any = server) -> None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

        running.closers.append(close)


GC_INTERVAL_SECONDS = 1800.0


async def _collect_garbage_periodically(core: Core) -> None:
    """Remove blob files left by failed writes and deleted items (older than an hour)."""
    while True:
        await asyncio.sleep(GC_INTERVAL_SECONDS)
        try:
            removed = await asyncio.to_thread(core.store.collect_garbage, 3600.0)
            if removed:
                log.info("blob garbage collection removed %d file(s)", removed)
        except Exception:
            log.exception("blob garbage collection failed")


# How often the indexer looks whether deliveries have paused (kantoor.storage.search_backlog).
INDEX_POLL_SECONDS = 0.1


async def _index_search_backlog(core: Core) -> None:
    """Write the SEARCH rows of the messages this process delivers once deliveries pause
    (:mod:`kantoor.storage.search_backlog`); at start, whatever a stopped or crashed process left."""
    store = core.store
    try:
        while await asyncio.to_thread(store.index_search_backlog):
            pass
    except Exception:
        log.exception("indexing the search backlog failed")
    backlog = store.search_backlog
    while True:
        await asyncio.sleep(INDEX_POLL_SECONDS)
        while backlog.due():
            batch = backlog.take()
            try:
                await asyncio.to_thread(store.index_search_backlog, batch)
            except Exception:
                backlog.noted(batch)  # tried again after the next pause; a SEARCH indexes them itself meanwhile
                log.exception("indexing the search backlog failed")
                break


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def print_banner(settings: Settings, boot: Bootstrap, ports: dict[str, int], tls: TLSFiles) -> None:
    host = settings.server.host
    url_host = f"[{host}]" if ":" in host else host
    lines = ["Kantoor is running."]
    if boot.admin_login:
        lines += [
            "",
            "First start: an administrator account was created.",
            f"  login:              {boot.admin_login}",
            f"  one-time password:  {boot.admin_password}",
            "  (shown only now; change it with `kantoor user passwd`)",
        ]
    if tls.generated:
        lines += ["", f"A self-signed TLS certificate was created: {tls.certificate}"]
    lines += [
        "",
        f"  CalDAV/CardDAV  http://{url_host}:{ports['http']}/dav/      https://{url_host}:{ports['https']}/dav/",
        f"  WebDAV drive    http://{url_host}:{ports['http']}/files/    https://{url_host}:{ports['https']}/files/",
        f"  IMAP            {host}:{ports['imap']} (STARTTLS)   {host}:{ports['imaps']} (TLS)",
        f"  SMTP (MX)       {host}:{ports['smtp']}",
        f"  Submission      {host}:{ports['submission']} (STARTTLS)   {host}:{ports['submissions']} (TLS)",
        "",
    ]
    print("\n".join(lines), flush=True)
    # One machine-readable line for scripts and the test suite.
    print("KANTOOR-READY " + json.dumps(ports, sort_keys=True), flush=True)


async def serve(settings: Settings, worker: WorkerRole | None = None) -> None:
    """Run every listener until SIGTERM/SIGINT.

    Alone (``worker`` None) the process prepares the data directory itself, binds
    the ports and prints the banner. As one of several server processes
    (kantoor.prefork) the supervisor has done the preparing, binding and printing:
    the worker serves the listening sockets it inherited, balanced with its
    siblings (kantoor.accept_balance), and reports when it does.
    """
    from twisted.internet import reactor

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(settings.server.worker_threads, thread_name_prefix="kantoor"))
    reactor.suggestThreadPoolSize(settings.server.worker_threads)  # type: ignore[attr-defined]
    reactor.startRunning(installSignalHandlers=False)  # type: ignore[attr-defined]

    core = await asyncio.to_thread(open_core, settings, worker is None)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = Running()
    sockets: dict[str, socket.socket] = {}
    try:
        boot = Bootstrap() if worker else await asyncio.to_thread(bootstrap_admin, core)
        tls = await asyncio.to_thread(ensure_certificate, settings)
        balancing = worker.balancing if worker is not None else None
        if worker is not None:
            sockets = dict(worker.sockets)
        else:
            # getaddrinfo may ask a resolver for a host name: not on the loop.
            sockets = await asyncio.to_thread(bind_all, settings)
        # Opening the LISTEN connection waits for PostgreSQL: not on the loop.
        await asyncio.to_thread(core.start_cross_process_notifications)
        await _start_imap(core, tls, sockets, running, balancing)
        await _start_smtp(core, tls, sockets, running, balancing)
        await _start_http(core, tls, sockets, running, balancing)
        # What start-up created (modules, ORM mappings, compiled statements) lives as long as the
        # process: out of the collector's way, a full collection walks only what requests made (a
        # FETCH 1:* of 10,000 messages triggered one about every third call, 57-72 ms each).
        gc.freeze()
        if worker is None:
            print_banner(settings, boot, running.ports, tls)
        else:
            worker.ready()
        collector = asyncio.create_task(_collect_garbage_periodically(core), name="blob-gc")
        running.closers.insert(0, lambda: _cancel(collector))
        indexer = asyncio.create_task(_index_search_backlog(core), name="search-indexer")
        running.closers.insert(0, lambda: _cancel(indexer))
        await stop.wait()
        log.info("stopping")
    finally:
        for close in reversed(running.closers):
            try:
                await asyncio.wait_for(close(), 10)
            except Exception:
                log.exception("listener did not close cleanly")
        for sock in sockets.values():
            sock.close()  # those no listener took over (a start that failed half-way)
        await asyncio.to_thread(core.close)


@dataclass
class WorkerRole:
    """What a pre-forked worker gets from its supervisor: how to say it listens, the listening sockets
    (shared with its siblings) and its slot in the table of their connection counts."""

    ready: Callable[[], None]
    sockets: dict[str, socket.socket]
    balancing: Balancing


def configure_logging(several_processes: bool = False) -> None:
    # With several server processes, which one said it matters.
    where = " [%(process)d]" if several_processes else ""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s{where} %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # Libraries that log every command line (with addresses) at INFO.
    for name in ("alembic", "mail.log"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(settings: Settings) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    processes = settings.server.processes or (os.cpu_count() or 1)
    configure_logging(processes > 1)
    if processes > 1:
        from kantoor.prefork import supervise

        return supervise(settings, processes)
    return run_one(settings)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop (libuv) where installed, else asyncio's own.

    Every protocol runs on this one loop, so its per-event cost is paid on every
    SMTP command, IMAP line and HTTP request (bench/smtp.py, bench/imap.py).
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_one(settings: Settings, worker: WorkerRole | None = None) -> int:
    """One server process: the loop, the reactor on it, :func:`serve` until stopped."""
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor

    outcome: dict[str, BaseException | None] = {"error": None}

    async def main() -> None:
        try:
            await serve(settings, worker)
        except BaseException as exc:  # reported after the loop ends
            outcome["error"] = exc
        finally:
            # Stopping the reactor runs Twisted's shutdown (thread pool, open
            # connections) and finally stops the asyncio loop.
            reactor.stop()  # type: ignore[attr-defined]

    loop.create_task(main())
    loop.run_forever()
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    error = outcome["error"]
    if error is not None:
        if isinstance(error, OSError):
            print(f"kantoor: cannot start: {error}", file=sys.stderr)
            return 1
        raise error
    return 0
