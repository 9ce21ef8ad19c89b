"""A TCP forwarder between the app and a real server, to take that server away and bring it
back without touching it: `pause()` refuses new connections and cuts the live ones, as a
database that restarts does; `go_silent()` cuts the live ones and then accepts connections
but never answers, as a host behind a failed network does; `resume()` forwards again on the
same port."""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`, a thread per direction per connection."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stop = threading.Event()
        self._silent = False

    def __enter__(self) -> TcpProxy:
        self.resume()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.pause()

    def resume(self) -> None:
        """Listen (on the same port as before, once there was one) and forward again."""
        self._listen(silent=False)

    def go_silent(self) -> None:
        """Cut every forwarded connection; from now on accept connections, answer nothing."""
        self._listen(silent=True)

    def _listen(self, silent: bool) -> None:
        self.pause()  # whatever it did before, and the connections it held
        self._silent = silent
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The connections cut by pause() leave this port in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True, name="tcp-proxy")
        self._accepting.start()

    def pause(self) -> None:
        """Stop listening (a connect is refused) and close every forwarded connection."""
        self._stop.set()
        if self._accepting is not None:
            self._accepting.join()
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            live, self._sockets = self._sockets, set()
        for sock in live:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([listener], [], [], 0.05)
            if not ready:
                continue
            client, _ = listener.accept()
            if self._silent:
                with self._lock:
                    self._sockets.add(client)  # held open, never read: closed by pause()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass  # cut by pause(), or by the other side
        for sock in (source, target):
            _close(sock)
            with self._lock:
                self._sockets.discard(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut, or never connected
    sock.close()
