"""`lineside run --dashboard HOST:PORT`: the live page, bound before the line starts, served while it runs."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from lineside.runtime.dashboard.feed import LineFeed, LiveView, line_stats
from lineside.runtime.dashboard.server import DashboardServer, listen, live_app, url_of, uvicorn_module

if TYPE_CHECKING:
    from lineside.runtime.pipeline import Pipeline

log = logging.getLogger(__name__)


class LiveDashboard:
    """Binds `address` now (a busy port or a missing extra fails before anything else opens); `feed` is the
    pipeline's observer; `start` serves the page from its own thread, `stop` ends it."""

    def __init__(self, address: str, period_s: float = 0.5) -> None:
        uvicorn_module()
        self._sock = listen(address)
        self.url = url_of(self._sock)
        self.feed = LineFeed()
        self.period_s = period_s
        self._closing = threading.Event()
        self._server: DashboardServer | None = None

    def start(self, pipeline: Pipeline, info: dict[str, Any]) -> None:
        """Serve the page over `pipeline` (whose observer is `self.feed`); `info` titles the page."""
        view = LiveView(self.feed, line_stats(pipeline), self.period_s)
        self._server = DashboardServer(live_app(view, info, self._closing), self._sock)
        self._server.start()
        log.info("dashboard: %s", self.url)

    def stop(self) -> None:
        """Send the last snapshot (`running: false`), close the connections and the socket."""
        self._closing.set()
        if self._server is not None:
            self._server.stop()
        else:
            self._sock.close()
