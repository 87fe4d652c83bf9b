"""Local receivers the operating tests start: a StatsD UDP listener, an SMTP sink and an HTTP webhook.

Each listens on 127.0.0.1 on a free port, in a thread of the test process, and keeps what it received
for the test to read. No mail or request leaves the machine.
"""

from __future__ import annotations

import email
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (receivers get their data from other threads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class StatsdListener:
    port: int
    lines: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[tuple[float, str]]:
        """``(value, type)`` of every line for metric ``name`` (``airflow.pgwarden...:3|g``)."""
        found = []
        for line in self.lines:
            metric, _, rest = line.partition(":")
            if metric == name:
                value, _, kind = rest.partition("|")
                found.append((float(value), kind.split("|")[0]))
        return found


@contextmanager
def statsd_listener() -> Iterator[StatsdListener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    listener = StatsdListener(port=sock.getsockname()[1])
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            listener.lines.extend(data.decode(errors="replace").splitlines())

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


def send_airflow_metrics_to(listener: StatsdListener, monkeypatch) -> None:
    """Airflow's [metrics] as a deployment sets them, pointed at ``listener``; Stats is set up again by the
    first metric sent (dag.test() runs tasks without the task runner's set-up)."""
    from airflow.sdk._shared.observability.metrics import stats as stats_state

    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setattr(stats_state, "_factory", None)
    monkeypatch.setattr(stats_state, "_backend", None)


@dataclass
class SmtpSink:
    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """Just enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for smtplib to deliver a message."""
    sink = SmtpSink(port=0)

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(f"{line}\r\n".encode())

        def handle(self) -> None:
            self.reply("220 pgwarden-test-sink ESMTP")
            sender, recipients = "", []
            while True:
                raw = self.rfile.readline()
                if not raw:
                    return
                command = raw.decode(errors="replace").strip()
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.reply("250-pgwarden-test-sink")
                    self.reply("250 8BITMIME")
                elif verb in ("HELO", "NOOP", "RSET"):
                    self.reply("250 OK")
                elif verb == "MAIL":
                    sender, recipients = command.split(":", 1)[1].strip().strip("<>"), []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    body = []
                    while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                        body.append(line[1:] if line.startswith(b"..") else line)
                    sink.messages.append(email.message_from_bytes(b"".join(body)))
                    sink.envelopes.append((sender, recipients))
                    self.reply("250 OK queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class WebhookReceiver:
    port: int
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Records every POST as ``(path, headers, JSON body)`` and answers 200."""
    receiver = WebhookReceiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.requests.append((self.path, dict(self.headers), json.loads(body or b"null")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
