"""ARCHITECTURE invariant 3: a large HTTP upload in progress does not stall IMAP on the same loop."""

from __future__ import annotations

import base64
import imaplib
import socket
import threading
import time


def test_imap_noop_is_answered_during_a_large_upload(server) -> None:  # type: ignore[no-untyped-def]
    total = 300 * 1024 * 1024  # announced size; we send a part, pause, send more
    token = base64.b64encode(f"{server.admin_login}:{server.admin_password}".encode()).decode()
    upload = socket.create_connection((server.host, server.ports["http"]), timeout=60)
    upload.sendall((f"PUT /files/{server.admin_login}/big-upload.bin HTTP/1.1\r\nHost: {server.host}\r\n"
                    f"Authorization: Basic {token}\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Length: {total}\r\n\r\n").encode())
    chunk = b"\0" * (1024 * 1024)
    stop = threading.Event()
    sent = [0]

    def pump() -> None:
        # Keep the server busy receiving (bounded: at most `total` bytes, 60 s).
        deadline = time.monotonic() + 60
        while not stop.is_set() and sent[0] < total - len(chunk) and time.monotonic() < deadline:
            upload.sendall(chunk)
            sent[0] += len(chunk)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        while sent[0] < 20 * len(chunk):  # the upload is well under way
            time.sleep(0.05)
        with imaplib.IMAP4(server.host, server.ports["imap"], timeout=10) as imap:
            imap.login(server.admin_login, server.admin_password)
            for _ in range(5):
                before = sent[0]
                assert imap.noop()[0] == "OK"
                # The NOOP came back while the upload was still streaming.
                assert sent[0] < total - len(chunk) and pumper.is_alive(), (before, sent[0])
    finally:
        stop.set()
        pumper.join(10)
        upload.close()
