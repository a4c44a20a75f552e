"""Real servers on loopback for the notification tests: an HTTP webhook and an SMTP server.

Both run in a thread of the test process and record what they receive. The SMTP server speaks the
protocol's plain (no TLS, no auth) subset that smtplib uses to hand over a message: EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT. (Python 3.11's ``smtpd`` is deprecated and aiosmtpd is not installed.)
"""

from __future__ import annotations

import email
import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class Webhook:
    """A webhook on ``url``: every POSTed JSON body lands in ``received``; ``status`` is what it answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received: list[dict[str, Any]] = []
        self.status = 204
        self.attempts = 0  # every POST, answered with an error or not
        self.refused_ids: set[str] = set()  # alerts answered 413 (too large), whatever ``status`` says


@contextmanager
def webhook_server() -> Iterator[Webhook]:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            hook.attempts += 1
            status = 413 if body.get("id") in hook.refused_ids else hook.status
            if status < 400:
                hook.received.append(body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_port}/hooks/crack"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


class Mailbox:
    """What the SMTP server accepted: one (envelope sender, recipients, parsed message) per mail."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mails: list[tuple[str, list[str], Message]] = []


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox(0)

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(f"{line}\r\n".encode())

        def handle(self) -> None:
            sender, recipients = "", []
            self.reply("220 localhost test SMTP")
            while line := self.rfile.readline().decode("utf-8", "replace"):
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    self.reply("250 localhost")
                elif verb == "MAIL":
                    sender, recipients = line.split(":", 1)[1].strip().strip("<>"), []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    lines = []
                    while (data := self.rfile.readline()) not in (b".\r\n", b""):
                        lines.append(data[1:] if data.startswith(b"..") else data)  # undo dot-stuffing
                    box.mails.append((sender, recipients, email.message_from_bytes(b"".join(lines))))
                    self.reply("250 OK queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:  # RSET, NOOP
                    self.reply("250 OK")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
