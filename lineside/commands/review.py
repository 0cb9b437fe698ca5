"""`lineside review`: the dashboard page over a recorded results log and its saved images."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "Browse a recorded results log in the dashboard page: filter decisions, view images and heatmaps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside review`."""
    parser.add_argument("log", type=Path, help="results log (the --log file of `lineside run`)")
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="saved reject images (default: each run's --save-rejects folder, as recorded in the log)",
    )
    parser.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        default="127.0.0.1:8080",
        help="where to serve the page (default 127.0.0.1:8080; pip install 'lineside[dashboard]')",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside review`: serves until Ctrl-C."""
    from lineside.runtime.dashboard.review import ReviewLog
    from lineside.runtime.dashboard.server import DashboardServer, listen, review_app

    review = ReviewLog(args.log, args.images)
    app = review_app(review)
    server = DashboardServer(app, listen(args.dashboard))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).info("reviewing %s on %s (Ctrl-C to stop)", args.log, server.url)
    server.serve_forever()
    return 0
