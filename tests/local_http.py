"""A throw-away HTTP server on 127.0.0.1 for download tests: serves bytes from memory, honours Range requests,
and can be told to fail, to cut a transfer short, to ignore Range, to resume at the wrong byte, to send no
Content-Length, or to send slowly."""

from __future__ import annotations

import http.server
import threading
import time
from collections import defaultdict


class LocalServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, list[int]] = defaultdict(list)  # path -> statuses to answer with, one per request
        self.truncate_once: set[str] = set()  # path -> first answer sends only half the body
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.ignore_range: set[str] = set()  # answer 200 with the whole body even to a Range request
        self.wrong_offset: dict[str, int] = {}  # answer a Range request with a 206 starting this many bytes later
        self.no_length: set[str] = set()  # send no Content-Length; the end of the body is the closed connection
        self.seconds_per_chunk: dict[str, float] = {}  # send 64 KiB at a time with this pause between chunks
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
                if ranged and ranged.startswith("bytes=") and self.path not in server.ignore_range:
                    start = int(ranged[6:].split("-")[0]) + server.wrong_offset.get(self.path, 0)
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                if self.path in server.no_length:
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if self.path in server.truncate_once:
                    server.truncate_once.discard(self.path)
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                pause = server.seconds_per_chunk.get(self.path)
                if pause is None:
                    self.wfile.write(part)
                    return
                for offset in range(0, len(part), 1 << 16):
                    self.wfile.write(part[offset : offset + (1 << 16)])
                    self.wfile.flush()
                    time.sleep(pause)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> LocalServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
