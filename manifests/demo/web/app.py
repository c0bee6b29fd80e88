"""web: the demo's front end, a Flask app in front of the counter service.

GET /         asks the counter for its value and increments it
              (COUNTER_URL, default http://counter:8080/get_and_increment_counter: the Service
              `counter` by name, resolved by Conductor's DNS) and shows the value in a small
              HTML page; JSON {"count": N} with ?format=json or Accept: application/json.
              502 (a page, or {"error": ...}) when the counter cannot be reached or answers
              something else than a number.
GET /healthz  "ok", without asking the counter: the readiness probe's target.

Listens on LISTEN_HOST:PORT (default 0.0.0.0:8080). Runs on Debian bookworm's python3-flask (2.2)
and python3-requests, and newer ones: `python3 /app/app.py`. It serves with Werkzeug's threaded
development server, which is enough for a demo's handful of requests (a production deployment
would put it behind gunicorn or similar); SIGTERM or SIGINT shuts the server down and exits 0
(as the container's PID 1 the process must handle SIGTERM itself: the kernel ignores it
otherwise).
"""

import html
import os
import signal
import socket
import sys
import threading

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

COUNTER_URL = os.environ.get("COUNTER_URL", "http://counter:8080/get_and_increment_counter")
COUNTER_TIMEOUT = float(os.environ.get("COUNTER_TIMEOUT", "2"))
HOST = os.environ.get("LISTEN_HOST", "0.0.0.0")
PORT = int(os.environ.get("PORT", "8080"))

app = Flask(__name__)

# One keep-alive session per server thread (a requests.Session is not thread-safe). No proxy
# from the environment: the counter is a service address on this node, never behind one.
_local = threading.local()


def _session() -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.trust_env = False
        _local.session = s
    return s


class CounterError(Exception):
    """The counter could not be reached or gave no number."""


def next_count() -> int:
    """The counter's value before this visit incremented it."""
    try:
        r = _session().get(COUNTER_URL, timeout=COUNTER_TIMEOUT)
    except requests.Timeout as e:
        print(f"web: {COUNTER_URL}: {e}", file=sys.stderr, flush=True)
        raise CounterError(
            f"the counter at {COUNTER_URL} did not answer within {COUNTER_TIMEOUT:g} s"
        ) from e
    except requests.RequestException as e:
        print(f"web: {COUNTER_URL}: {e}", file=sys.stderr, flush=True)
        raise CounterError(f"cannot reach the counter at {COUNTER_URL} ({type(e).__name__})") from e
    if r.status_code != 200:
        raise CounterError(f"the counter at {COUNTER_URL} answered HTTP {r.status_code}")
    try:
        return int(r.text.strip())
    except ValueError as e:
        raise CounterError(
            f"the counter at {COUNTER_URL} answered {r.text[:40]!r}, not a number"
        ) from e


def wants_json() -> bool:
    if request.args.get("format") == "json":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conductor demo</title></head>
<body><h1>Conductor demo</h1><p>count: <strong id="count">{count}</strong></p>
<p>from {url}, served by {host}</p></body></html>
"""

ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>502 Bad Gateway</title></head>
<body><h1>502 Bad Gateway</h1><p>{message}</p></body></html>
"""


@app.get("/")
def index() -> Response:
    try:
        count = next_count()
    except CounterError as e:
        if wants_json():
            resp = jsonify(error=str(e))
        else:
            resp = Response(ERROR_PAGE.format(message=html.escape(str(e))), mimetype="text/html")
        resp.status_code = 502
        return resp
    if wants_json():
        resp = jsonify(count=count)
    else:
        page = PAGE.format(
            count=count, url=html.escape(COUNTER_URL), host=html.escape(socket.gethostname())
        )
        resp = Response(page, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


def main() -> int:
    server = make_server(HOST, PORT, app, threaded=True)

    def stop(signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever() to return, which runs in this (the main)
        # thread: ask from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"web listening on {HOST}:{server.server_port}, counter at {COUNTER_URL}", flush=True)
    server.serve_forever()
    server.server_close()
    print("web: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
