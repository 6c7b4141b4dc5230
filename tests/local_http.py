"""A throw-away HTTP server on 127.0.0.1 for download tests: serves bytes from memory, honours Range requests,
and can be told to fail or to cut a transfer short."""

from __future__ import annotations

import http.server
import threading
from collections import defaultdict


class LocalServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, list[int]] = defaultdict(list)  # path -> statuses to answer with, one per request
        self.truncate_once: set[str] = set()  # path -> first answer sends only half the body
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if server.fail[self.path]:
                    self.send_error(server.fail[self.path].pop(0))
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if self.path in server.truncate_once:
                    server.truncate_once.discard(self.path)
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> LocalServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
