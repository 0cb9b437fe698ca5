"""Serving the page: bind address parsing, the Starlette app (live or review) and uvicorn on its own thread.

The server runs one asyncio loop on one thread; every handler is async and short, so JPEG encoding and
snapshots are serialized there and never run on the line's threads.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import socket
import threading
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from lineside.errors import LinesideError
from lineside.runtime.dashboard.feed import KINDS, LiveView
from lineside.runtime.dashboard.review import VERDICTS, Filter, ReviewLog

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

STATIC = ("index.html", "dashboard.js", "dashboard.css")
MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8080`) -> (host, port); the host must be an IP address or `localhost`."""
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
        if host != "localhost":
            ipaddress.ip_address(host)
    except ValueError:
        port = -1
    if not sep or not host or not 0 <= port <= 65535:
        raise LinesideError(f"dashboard address {text!r} must be HOST:PORT with an IP host, e.g. 127.0.0.1:8080")
    return host, port


def listen(text: str) -> socket.socket:
    """A listening socket on `HOST:PORT`; a busy port or a foreign address is a one-line error."""
    host, port = parse_address(text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise LinesideError(f"dashboard cannot listen on {text}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's URL for a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def uvicorn_module() -> Any:
    """uvicorn, once Starlette is known to import too; else a one-line error naming the extra to install."""
    try:
        import starlette.applications  # noqa: F401 - checked here so the error names the extra
        import uvicorn
    except ImportError as exc:
        raise LinesideError(f"the dashboard needs {exc.name}: pip install 'lineside[dashboard]'") from exc
    return uvicorn


async def _static(request: Request) -> Response:
    from starlette.responses import Response

    name = request.path_params.get("name", "index.html")
    if name not in STATIC:
        return Response("not found", status_code=404)
    body = resources.files("lineside.runtime.dashboard").joinpath("static", name).read_bytes()
    return Response(body, media_type=MEDIA[name[name.rindex(".") :]], headers={"Cache-Control": "no-cache"})


def _jpeg(data: bytes | None) -> Response:
    from starlette.responses import Response

    if data is None:
        return Response("no such image", status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def live_app(view: LiveView, info: dict[str, Any], closing: threading.Event) -> Starlette:
    """The page over a running line: `/api/events` streams a snapshot every `view.period_s` (server-sent events)."""
    uvicorn_module()
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def events(_request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"  # the page reconnects within a second once a restarted line serves again
            while not closing.is_set():
                yield f"data: {json.dumps({**view.snapshot(), 'running': True})}\n\n"
                await asyncio.sleep(view.period_s)
            yield f"data: {json.dumps({**view.snapshot(), 'running': False})}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def about(_request: Request) -> Response:
        return JSONResponse({"mode": "live", **info})

    async def frame(_request: Request) -> Response:
        return _jpeg(view.feed.latest_jpeg())

    async def reject(request: Request) -> Response:
        kind = request.path_params["kind"]
        return _jpeg(view.feed.reject_jpeg(request.path_params["seq"], kind) if kind in KINDS else None)

    routes = [
        Route("/", _static),
        Route("/static/{name}", _static),
        Route("/api/info", about),
        Route("/api/events", events),
        Route("/live/frame.jpg", frame),
        Route("/live/reject/{seq:int}/{kind}.jpg", reject),
    ]
    return Starlette(routes=routes)


MAX_LIMIT = 500  # decisions per page
MAX_OFFSET = 10**12


class BadQuery(ValueError):
    """A query parameter the review API cannot use; answered with 400 and this message."""


def _number(params: Mapping[str, str], name: str) -> float | None:
    """A finite number, or None when the parameter is absent or empty."""
    text = params.get(name, "").strip()
    try:
        value = float(text) if text else None
    except ValueError:
        value = math.nan
    if value is not None and not math.isfinite(value):
        raise BadQuery(f"{name} must be a finite number, got {text!r}")
    return value


def _integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A decimal integer in [low, high], or `default` when the parameter is absent or empty."""
    text = params.get(name, "").strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise BadQuery(f"{name} must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def parse_query(params: Mapping[str, str]) -> tuple[Filter, int, int]:
    """(filter, offset, limit) of `/api/decisions`; BadQuery for a malformed or out-of-range parameter."""
    verdict = params.get("verdict", "").strip() or None
    if verdict is not None and verdict not in VERDICTS:
        raise BadQuery(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    where = Filter(
        verdict=verdict,
        class_name=params.get("class") or None,
        min_score=_number(params, "min_score"),
        max_score=_number(params, "max_score"),
    )
    return where, _integer(params, "offset", 0, 0, MAX_OFFSET), _integer(params, "limit", 100, 1, MAX_LIMIT)


def review_app(review: ReviewLog) -> Starlette:
    """The page over a recorded results log: filtered decisions and each one's saved image and heatmap."""
    uvicorn_module()
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    async def info(_request: Request) -> Response:
        return JSONResponse({"mode": "review", "log": str(review.path), "classes": review.classes()})

    async def decisions(request: Request) -> Response:
        try:
            where, offset, limit = parse_query(request.query_params)
        except BadQuery as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(review.query(where, offset, limit))

    async def image(request: Request) -> Response:
        kind = request.path_params["kind"]
        path = review.image_path(request.path_params["index"], kind) if kind in KINDS else None
        if path is None:
            return Response("no such image", status_code=404)
        return FileResponse(path, media_type="image/jpeg")

    routes = [
        Route("/", _static),
        Route("/static/{name}", _static),
        Route("/api/info", info),
        Route("/api/decisions", decisions),
        Route("/review/{index:int}/{kind}.jpg", image),
    ]
    return Starlette(routes=routes)


class DashboardServer:
    """uvicorn serving `app` on an already listening socket, from a daemon thread."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        uvicorn = uvicorn_module()
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2, log_level="warning"
        )
        self.url = url_of(sock)
        self._sock = sock
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, args=([sock],), name="lineside-dashboard", daemon=True)

    def start(self) -> None:
        """Serve from now on."""
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (Ctrl-C)."""
        self._server.run([self._sock])

    def stop(self) -> None:
        """Close the connections and the socket, and wait for the server thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()
