"""A forwarding HTTP proxy in front of a store, with a switchable fault: slow, drop, or answer an S3 error."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from runner_cache.blocks.store import StoreSettings

# A fault rule sees (method, path, query, body) and says what to do: None (forward), an int (answer that HTTP
# status with an S3 error body), (status, S3 error code) or (status, code, message) (the same with that code and
# message), a float (forward after that many seconds), or "drop" (close without answering).
Rule = Callable[[str, str, str, bytes], "int | tuple[int, str] | tuple[int, str, str] | float | str | None"]


@dataclass
class FaultProxy:
    """A forwarding HTTP proxy in front of a store (Host kept, so signatures stay valid) with a switchable fault."""

    endpoint: str
    rule: Rule | None = None
    seen: list[tuple[str, str, str, object]] = field(default_factory=list)

    def store(self, store: StoreSettings) -> StoreSettings:
        return store.model_copy(update={"endpoint": self.endpoint})

    def count(self, action: object) -> int:
        return sum(1 for *_, done in self.seen if done == action)


def _error_answer(action: int | tuple) -> tuple[int, str, str]:
    """(status, S3 error code, message) of a rule's error answer."""
    if isinstance(action, int):
        return action, "ServiceUnavailable", "injected by the test proxy"
    status, code, *message = action
    return status, code, message[0] if message else "injected by the test proxy"


def _handler(upstream: tuple[str, int], proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            action = proxy.rule(self.command, parts.path, parts.query, body) if proxy.rule else None
            proxy.seen.append((self.command, parts.path, parts.query, action))
            if action == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if isinstance(action, int | tuple):  # an S3 error answer
                status, code, message = _error_answer(action)
                error = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            if isinstance(action, float):
                time.sleep(action)
            connection = http.client.HTTPConnection(*upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection", "transfer-encoding"}}
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except OSError:
                self.close_connection = True  # the store is gone: so is the answer, as with the store itself
                self.connection.close()
                return
            finally:
                connection.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@contextmanager
def fault_proxy(store: StoreSettings) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of ``store`` on 127.0.0.1, stopped afterwards."""
    upstream = urlsplit(store.endpoint)
    proxy = FaultProxy(endpoint="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler((upstream.hostname or "", upstream.port or 80), proxy))
    server.daemon_threads = True
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
