"""A fake Zenodo (record API + file downloads) and mirror, served on 127.0.0.1 by the tests.

``/api/records/<id>`` answers the JSON shape of Zenodo's record API (``files: [{key, size,
checksum: "md5:..."}]``); ``/records/<id>/files/<key>`` serves the bytes, honouring HTTP Range.
Any other path in ``static`` is served as is (a mirror, or nnabla.org). Misbehaviours are
switched on per path: drop the connection after N bytes, stall, ignore Range, answer slowly.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: The small asteroid X-UMX fixture, which the tests serve as ``xumx`` (record 4704231, file
#: XUMX_FILE) and under the other published X-UMX names.
ASTEROID = (Path(__file__).parent / "fixtures" / "peers" / "xumx_asteroid.pth").read_bytes()
XUMX_FILE = "pretrained_xumx.pth"


@dataclass
class Behaviour:
    drop_after: list[int] = field(default_factory=list)  # one entry used per request, in order
    stall: bool = False  # send the headers and some bytes, then nothing
    ignore_range: bool = False
    delay_per_block: float = 0.0
    record_size: int | None = None  # lie in the record API
    record_md5: str | None = None


class FakeZenodo:
    def __init__(self) -> None:
        self.records: dict[int, dict[str, bytes]] = {}
        self.static: dict[str, bytes] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_record(self, record: int, files: dict[str, bytes]) -> None:
        self.records[record] = files

    def file_requests(self, name: str) -> list[str | None]:
        """The Range header of every request for a file whose path ends with ``name``."""
        return [rng for path, rng in self.requests if path.endswith("/" + name)]

    # -- serving -------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        with self._lock:
            self.requests.append((path, h.headers.get("Range")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "records"] and len(parts) == 3 and int(parts[2]) in self.records:
            return self._json(h, self._record(int(parts[2])))
        body: bytes | None = None
        if len(parts) == 4 and parts[0] == "records" and parts[2] == "files":
            body = self.records.get(int(parts[1]), {}).get(parts[3])
        elif path in self.static:
            body = self.static[path]
        if body is None:
            h.send_response(404)
            h.send_header("Content-Length", "9")
            h.end_headers()
            h.wfile.write(b"not found")
            return None
        return self._file(h, body, self.behaviour.get(parts[-1], Behaviour()))

    def _record(self, record: int) -> dict[str, Any]:
        files = []
        for key, data in self.records[record].items():
            b = self.behaviour.get(key, Behaviour())
            md5 = b.record_md5 or hashlib.md5(data).hexdigest()
            files.append({"id": f"id-{key}", "key": key, "size": b.record_size or len(data),
                          "checksum": f"md5:{md5}",
                          "links": {"self": f"{self.url}/api/records/{record}/files/{key}/content"}})
        return {"id": record, "files": files, "metadata": {"title": "fake"}}

    def _json(self, h: BaseHTTPRequestHandler, obj: Any) -> None:
        data = json.dumps(obj).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _file(self, h: BaseHTTPRequestHandler, body: bytes, b: Behaviour) -> None:
        start = 0
        rng = h.headers.get("Range")
        if rng and not b.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        with self._lock:
            limit = b.drop_after.pop(0) if b.drop_after else None
        data = body[start:]
        if limit is not None:
            data = data[:limit]
        try:
            for i in range(0, len(data), 8192):
                h.wfile.write(data[i:i + 8192])
                h.wfile.flush()
                if b.delay_per_block:
                    time.sleep(b.delay_per_block)
                if b.stall and i >= 16384:
                    self.release.wait(30)
                    return
        except (BrokenPipeError, ConnectionResetError):
            return
        if limit is not None:  # drop the connection mid-body
            h.close_connection = True
            h.wfile.flush()
            import socket

            h.connection.shutdown(socket.SHUT_RDWR)
