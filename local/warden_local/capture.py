"""A local stand-in for alert receivers (Slack incoming webhook, generic webhooks): accepts
every POST, answers 200, and appends it as one JSON line to a file, so the whole loop
metric → incident → route → receiver can be watched from the outside.

``python -m warden_local.capture --port N --out received.jsonl``
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warden_local.capture", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    lock = threading.Lock()
    out = args.out.open("a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20))
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            record = {
                "at": time.time(),
                "path": self.path,
                "body": parsed,
                "signature": self.headers.get("X-Warden-Signature"),
            }
            with lock:
                out.write(json.dumps(record) + "\n")
                out.flush()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready http://127.0.0.1:{server.server_port}", flush=True)
    stop.wait()
    server.shutdown()
    out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
