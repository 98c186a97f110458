"""A unix-socket proxy in front of the test Docker engine, so a test can make the
engine "go away" mid-stage (as when dockerd dies) without stopping the real one."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path


class EngineProxy:
    def __init__(self, engine_socket: str, path: Path) -> None:
        self.engine_socket = engine_socket
        self.path = path
        self.url = f"unix://{path}"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(16)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._cut_after: int | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.engine_socket)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        carried = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                carried += len(data)
                if self._cut_after is not None and carried > self._cut_after:
                    self._cut_after = None  # once: the next connection passes whole
                    for sock in (source, sink):
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    return
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def cut_once_after(self, nbytes: int) -> None:
        """Break the first connection that carries more than `nbytes` in one direction
        (a long log stream), as an engine restart or a flaky proxy does; the engine and
        every later connection stay fine."""
        self._cut_after = nbytes

    def go_away(self) -> None:
        """Drop every connection and the socket itself, as a dying engine does."""
        with self._lock:
            self._closed = True
            self._listener.close()
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
