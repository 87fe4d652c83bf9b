"""A TCP relay in its own process, standing in front of a server so a test can take the endpoint down.

Stopping moto itself would also throw away every bucket (it keeps them in memory), so a test that
wants to see what an outage left *in* the repository stops this relay instead: clients get
connection resets and refusals exactly as from a dead endpoint, and after ``start()`` on the same
port the repository is back as it was.

``python -m tests.harness.tcp_relay LISTEN_PORT TARGET_PORT`` relays 127.0.0.1:LISTEN_PORT to
127.0.0.1:TARGET_PORT until killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pgwarden.engine.cluster import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TcpRelay:
    target_port: int
    port: int = 0
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.tcp_relay", str(self.port), str(self.target_port)],
            cwd=REPO_ROOT, start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"relay on port {self.port} exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"relay on port {self.port} did not start within 15 s")

    def stop(self) -> None:
        """Kill the relay: every open connection is cut, new ones are refused."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(listen_port: int, target_port: int) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2])))
