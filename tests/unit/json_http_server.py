"""A local HTTP server for unit tests of modules and module_utils that speak HTTP."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading


@contextlib.contextmanager
def json_server(answer):
    """Serve on 127.0.0.1 until the block ends, answering every GET with ``answer(headers)`` as JSON (``headers``:
    the request's headers as a dict); yields the server's root URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(answer(dict(self.headers))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
