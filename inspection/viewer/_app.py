"""The viewer app: Starlette routes rendering Jinja2 templates over a
database opened read-only.

Each request opens its own read-only SQLite connection on a worker thread
(``anyio.to_thread.run_sync`` behind a ``CapacityLimiter``), runs a few
bounded, parameterized queries and closes it. Only GET and HEAD are served;
any other method gets 405 before reaching a route, and a request whose Host
header is not a loopback name or the configured host gets 400 (a defence
against DNS rebinding). Templates autoescape everything, and a
Content-Security-Policy forbids inline scripts as a second line of defence.
Ids past 2^63 - 1 are 404 like any unknown id; each text is rendered up to
``MAX_TEXT`` characters, with a marker and a link to the full view as JSON.
"""

from __future__ import annotations

import math
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog
import uvicorn
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from aloesim.environment.store import Evaluations, Runs, Trees, connect
from aloesim.inspection import show
from aloesim.inspection.quality import run_quality_summary

from ._filters import cap, dollars, num, pretty, secs, short, when
from ._guards import AllowedHosts, ReadOnly
from ._svg import al_chart, tree_picture

T = TypeVar("T")

log = structlog.get_logger(__name__)

MAX_QUERY = 200
MAX_CURVES = 8  # AL(k) lines drawn together on the index
ID_MAX = 2**63 - 1  # SQLite's largest integer: a larger id in a URL is simply not there


class IdConvertor(IntegerConvertor):
    """A path id: 1 to 19 digits (Starlette's ``int`` takes any number of digits, and
    ``int()`` of 5,000 of them raises inside the router: a 500). Longer is no route: 404."""

    regex = "[0-9]{1,19}"


register_url_convertor("aloe_id", IdConvertor())


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("aloesim.inspection.viewer", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html", "svg", "xml"), default=True, default_for_string=True
        ),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, secs=secs, num=num, pretty=pretty, short=short, cap=cap, dollars=dollars)
    return env


class Pages:
    """The page handlers, bound to one database file."""

    def __init__(self, db: Path, page_size: int, limiter: anyio.CapacityLimiter) -> None:
        self.db, self.page_size, self.limiter = db, page_size, limiter
        self.env = _environment()
        # run id -> (newest call id, stats): per-role call totals read every call of a
        # run, so they are computed once per change of the run's calls
        self._call_stats: OrderedDict[int, tuple[int | None, show.CallStats]] = OrderedDict()
        self._cache_lock = threading.Lock()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a fresh read-only connection in a worker thread."""
        return await anyio.to_thread.run_sync(partial(self._read, fn), limiter=self.limiter)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = connect(self.db, readonly=True)
        try:
            return fn(conn)
        finally:
            conn.close()

    def render(self, request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(request=request, db=self.db.name, **ctx)
        return HTMLResponse(html, status_code=status_code)

    # -- path and query parameters -------------------------------------------
    @staticmethod
    def _id(request: Request, name: str, what: str) -> int:
        """A path id (the route's int convertor took digits only); past 2^63 - 1 it cannot exist: 404."""
        value = request.path_params[name]
        if value > ID_MAX:
            raise HTTPException(404, f"no {what} with id {value}")
        return value

    @staticmethod
    def _int(request: Request, name: str, default: int, lo: int = 1) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPException(400, f"query parameter {name}={raw!r} is not an integer") from None
        if value < lo:
            raise HTTPException(400, f"query parameter {name}={value} must be at least {lo}")
        return value

    def _pager(self, request: Request, name: str, total: int) -> dict[str, Any]:
        pages = max(1, math.ceil(total / self.page_size))
        page = min(self._int(request, name, 1), pages)

        def url(p: int) -> str:
            return "?" + str(request.url.include_query_params(**{name: p}).query)

        return {
            "page": page,
            "pages": pages,
            "total": total,
            "offset": (page - 1) * self.page_size,
            "prev": url(page - 1) if page > 1 else None,
            "next": url(page + 1) if page < pages else None,
            "first": url(1) if page > 1 else None,
            "last": url(pages) if page < pages else None,
        }

    # -- pages ---------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        def q(conn: sqlite3.Connection) -> dict[str, Any]:
            runs_total, evals_total = Runs(conn).count(), Evaluations(conn).count()
            rp = self._pager(request, "page", runs_total)
            ep = self._pager(request, "epage", evals_total)
            runs, _ = show.list_runs(conn, limit=self.page_size, offset=rp["offset"])
            evals, _ = show.list_evaluations(conn, limit=self.page_size, offset=ep["offset"])
            shown = [e.id for e in evals[:MAX_CURVES]]
            curves = show.al_curves(conn, shown)
            chart = (
                al_chart(
                    [
                        (f"#{e.id} {e.label}", f"/evaluations/{e.id}", curves[e.id])
                        for e in evals[:MAX_CURVES]
                    ]
                )
                if any(curves.values())
                else None
            )
            first = Runs(conn).first()
            trees = Trees(conn).count_all()
            return {
                "runs": runs,
                "rp": rp,
                "evals": evals,
                "ep": ep,
                "first_run": first.id if first else None,
                "trees_total": trees,
                "chart": chart,
                "max_curves": MAX_CURVES,
            }

        return self.render(request, "index.html", **await self.read(q))

    async def run(self, request: Request) -> Response:
        run_id = self._id(request, "run_id", "run")
        text = request.query_params.get("q", "")[:MAX_QUERY]
        status = request.query_params.get("status", "")
        if status and status not in ("pending", "running", "complete", "failed"):
            raise HTTPException(400, f"status={status!r} is not one of pending, running, complete, failed")

        def q(conn: sqlite3.Connection) -> dict[str, Any] | None:
            run = show.load_run(conn, run_id, calls=False)
            if run is None:
                return None
            total = show.count_trees(conn, run_id, q=text, status=status)
            pager = self._pager(request, "page", total)
            trees = show.list_trees(
                conn, run_id, q=text, status=status, limit=self.page_size, offset=pager["offset"]
            )
            first = show.first_of_kind(conn, run.kind)  # compare with a run of the same kind only
            diff = show.config_diff(first.config, run.config) if first is not None and first.id != run_id else []
            return {
                "run": run,
                "trees": trees,
                "pager": pager,
                "q": text,
                "status": status,
                "diff": diff,
                "first_run": first.id if first is not None else None,
                "quality": run_quality_summary(conn, run_id, db_key=str(self.db)),
                "cost": self.call_stats(conn, run_id).cost,  # dollars: total, per model and role
            }

        data = await self.read(q)
        if data is None:
            raise HTTPException(404, f"no run with id {run_id}")
        return self.render(request, "run.html", **data)

    def call_stats(self, conn: sqlite3.Connection, run_id: int) -> show.CallStats:
        """A run's call totals, cached until the run records another call."""
        version = show.run_calls_version(conn, run_id)
        with self._cache_lock:
            hit = self._call_stats.get(run_id)
            if hit is not None and hit[0] == version:
                self._call_stats.move_to_end(run_id)
                return hit[1]
        stats = show.run_call_stats(conn, run_id)
        with self._cache_lock:
            self._call_stats[run_id] = (version, stats)
            while len(self._call_stats) > 64:
                self._call_stats.popitem(last=False)
        return stats

    async def warm(self, runs: int) -> None:
        """Fill the call-totals and quality caches for the ``runs`` newest runs."""

        def newest(conn: sqlite3.Connection) -> list[int]:
            return Runs(conn).newest_ids(runs)

        for run_id in await self.read(newest):
            t0 = time.perf_counter()
            stats = await self.read(partial(self.call_stats, run_id=run_id))
            await self.read(partial(run_quality_summary, run_id=run_id, db_key=str(self.db)))  # the run page's quality section
            log.info(
                "viewer.warm", run_id=run_id, calls=stats.calls, seconds=round(time.perf_counter() - t0, 3)
            )

    async def run_calls(self, request: Request) -> Response:
        run_id = self._id(request, "run_id", "run")

        def q(conn: sqlite3.Connection) -> dict[str, Any] | None:
            run = show.load_run(conn, run_id, calls=False)
            if run is None:
                return None
            return {"run": run, "stats": self.call_stats(conn, run_id)}

        data = await self.read(q)
        if data is None:
            raise HTTPException(404, f"no run with id {run_id}")
        return self.render(request, "run_calls.html", **data)

    async def tree(self, request: Request) -> Response:
        tree_id = self._id(request, "tree_id", "tree")
        branch = request.query_params.get("branch", "")
        if len(branch) > 256 or set(branch) - {"p", "r"}:
            raise HTTPException(400, f"branch={branch[:40]!r} is not a string of p and r letters")

        def q(conn: sqlite3.Connection) -> dict[str, Any] | None:
            tree = show.load_tree(conn, tree_id)
            if tree is None:
                return None
            return {"tree": tree, "events": show.tree_events(conn, tree_id)}

        data = await self.read(q)
        if data is None:
            raise HTTPException(404, f"no tree with id {tree_id}")
        tree = data["tree"]
        path = tree.path_to(branch)
        if branch and not path:
            raise HTTPException(404, f"tree {tree_id} has no node at branch {branch!r}")
        return self.render(
            request, "tree.html", pic=tree_picture(tree, path), path=path, branch=branch, **data
        )

    async def evaluation(self, request: Request) -> Response:
        evaluation_id = self._id(request, "evaluation_id", "evaluation")

        def q(conn: sqlite3.Connection) -> dict[str, Any] | None:
            ev = show.load_evaluation(conn, evaluation_id)
            if ev is None:
                return None
            pager = self._pager(request, "page", ev.cases)
            cases = show.list_cases(conn, evaluation_id, limit=self.page_size, offset=pager["offset"])
            return {"ev": ev, "cases": cases, "pager": pager}

        data = await self.read(q)
        if data is None:
            raise HTTPException(404, f"no evaluation with id {evaluation_id}")
        ev = data["ev"]
        return self.render(request, "evaluation.html", chart=al_chart([(ev.label, None, ev.curve)]), **data)

    async def case(self, request: Request) -> Response:
        case_id = self._id(request, "case_id", "benchmark case")
        case = await self.read(lambda conn: show.load_case(conn, case_id))
        if case is None:
            raise HTTPException(404, f"no benchmark case with id {case_id}")
        return self.render(request, "case.html", case=case)

    async def full_json(self, request: Request) -> Response:
        """A tree or a case with every text in full (``aloe show ... show.format=json``)."""
        kind = "tree" if "tree_id" in request.path_params else "case"
        ident = self._id(request, f"{kind}_id", "tree" if kind == "tree" else "benchmark case")
        load = show.load_tree if kind == "tree" else show.load_case
        view = await self.read(lambda conn: load(conn, ident))
        if view is None:
            raise HTTPException(404, f"no {'tree' if kind == 'tree' else 'benchmark case'} with id {ident}")
        return JSONResponse(view.as_dict())

    async def error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            status, detail = exc.status_code, exc.detail
        else:
            status, detail = 500, f"{type(exc).__name__}: {exc}"
        return self.render(request, "error.html", status_code=status, code=status, detail=detail)


def create_app(
    db: str | Path, *, page_size: int = 50, threads: int = 8, warm_runs: int = 3, host: str = "127.0.0.1"
) -> Starlette:
    """The viewer for the database at ``db``. Raises StoreError (one line) when
    the file is missing, not a database, or of another schema version. Requests
    must name a loopback host or ``host`` (the address it listens on).

    While the app runs (ASGI lifespan), a background task of its task group
    computes the call totals of the ``warm_runs`` newest runs, so their calls
    page is answered from the cache even the first time."""
    db = Path(db)
    connect(db, readonly=True).close()  # fail now, not on the first request
    pages = Pages(db, page_size, anyio.CapacityLimiter(threads))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            if warm_runs > 0:
                tg.start_soon(pages.warm, warm_runs)
            yield
            tg.cancel_scope.cancel()

    get = ["GET", "HEAD"]
    routes = [
        Route("/", pages.index, methods=get, name="index"),
        Route("/runs/{run_id:aloe_id}", pages.run, methods=get, name="run"),
        Route("/runs/{run_id:aloe_id}/calls", pages.run_calls, methods=get, name="run_calls"),
        Route("/trees/{tree_id:aloe_id}", pages.tree, methods=get, name="tree"),
        Route("/trees/{tree_id:aloe_id}/json", pages.full_json, methods=get, name="tree_json"),
        Route("/evaluations/{evaluation_id:aloe_id}", pages.evaluation, methods=get, name="evaluation"),
        Route("/cases/{case_id:aloe_id}", pages.case, methods=get, name="case"),
        Route("/cases/{case_id:aloe_id}/json", pages.full_json, methods=get, name="case_json"),
        Mount("/static", StaticFiles(packages=[("aloesim.inspection.viewer", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: pages.error, Exception: pages.error},
        lifespan=lifespan,
    )
    app.add_middleware(AllowedHosts, host=host)
    app.add_middleware(ReadOnly)
    return app


@contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a background thread; yields the base URL
    (``port=0`` picks a free port). Stops the server on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    real_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="aloe-viewer", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("viewer server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{real_port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
