"""``aloe view``: the read-only local web viewer.

    aloe view db=aloe.db view.port=8765       # then open http://127.0.0.1:8765/

Serves on 127.0.0.1 unless ``view.host`` says otherwise (with a warning:
transcripts and personas would be visible to the network). Only GET and
HEAD requests are answered; the database is opened read-only.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

import structlog
import uvicorn
from omegaconf import DictConfig

from ...core import to_settings
from ...core.errors import ServerError
from ...inspection.viewer import create_app
from .._schemas import ViewSettings

HELP = "serve a read-only local web viewer of runs, trees, LLM calls and evaluations (127.0.0.1)"

log = structlog.get_logger(__name__)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def options(cfg: DictConfig) -> dict:
    """Validated ``view.*`` settings."""
    v: ViewSettings = to_settings(cfg.get("view"), ViewSettings, "view")
    return {"host": v.host.strip(), "port": v.port, "page_size": v.page_size, "threads": v.threads,
            "warm_runs": v.warm_runs}


def validate(cfg: DictConfig) -> None:
    """The config checks that need no database or socket (run before any -m job)."""
    options(cfg)


def run(cfg: DictConfig) -> int:
    opts = options(cfg)
    app = create_app(
        cfg.db, page_size=opts["page_size"], threads=opts["threads"], warm_runs=opts["warm_runs"], host=opts["host"]
    )  # StoreError if unusable
    host, port = opts["host"], opts["port"]
    if not is_loopback(host):
        log.warning(
            "viewer listening beyond this machine",
            host=host,
            hint="anyone who can reach this address can read the database's transcripts",
        )
        print(
            f"aloe view: WARNING: listening on {host}, not 127.0.0.1; the database is readable from the network",
            file=sys.stderr,
        )
    sock = listen(host, port)
    real_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"aloe view: serving {cfg.db} read-only at http://{shown}:{real_port}/ (Ctrl-C to stop)",
        file=sys.stderr,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 = a free one); ServerError when
    the address is taken or cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServerError("viewer", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
