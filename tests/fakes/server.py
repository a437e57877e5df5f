"""The one way the fakes serve HTTP: a werkzeug WSGI app in a daemon thread, quiet, on 127.0.0.1 or a unix socket."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # tests read the fakes' recorded calls instead
        pass


class WsgiThread:
    """Serve ``app`` at ``host`` (``127.0.0.1`` or ``unix://PATH``) on a free port until :meth:`stop`."""

    def __init__(self, app: Any, name: str, host: str = "127.0.0.1") -> None:
        self._server = make_server(host, 0, app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=name, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> WsgiThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
