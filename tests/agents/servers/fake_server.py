"""A stand-in model server for the launcher's unit tests:
``python fake_server.py PORT [--ignore-term] [--delay S]`` answers 200 to
``GET /v1/models`` on 127.0.0.1:PORT.  ``--ignore-term`` ignores SIGTERM (to
test the SIGKILL fallback); ``--delay`` waits before binding."""

import http.server
import signal
import sys
import time

port = int(sys.argv[1])
print(f"fake server starting on {port}", flush=True)
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--delay" in sys.argv:
    time.sleep(float(sys.argv[sys.argv.index("--delay") + 1]))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"object": "list", "data": [{"id": "fake"}]}'
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
