"""`lineside cameras`: the GenICam cameras this machine sees, through Aravis and Basler pylon, as --source URLs."""

from __future__ import annotations

import argparse
import json
import sys

from lineside.errors import LinesideError

HELP = "List the GenICam cameras this machine sees (Aravis for any GigE/USB3 Vision camera, Basler pylon)."

EPILOG = """\
Discovery asks every network interface (GigE Vision broadcast) and the USB bus, like arv-tool-0.8.
--address asks one GigE Vision address only; --device-class asks one pylon transport layer only
(BaslerCamEmu lists pylon's camera emulation, switched on with PYLON_CAMEMU=1).
"""

PYLON_CLASSES = ("BaslerGigE", "BaslerUsb", "BaslerCamEmu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside cameras`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--via", choices=("all", "genicam", "pylon"), default="all", help="which path to ask")
    parser.add_argument("--address", metavar="IP", help="genicam: ask only the GigE Vision camera at this address")
    parser.add_argument("--device-class", choices=PYLON_CLASSES, help="pylon: ask only this transport layer")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of one line per camera")


def _found(args: argparse.Namespace) -> tuple[list[dict[str, str]], list[str]]:
    """(cameras, notes on paths whose library is missing); LinesideError when no asked path can be used."""
    from lineside.runtime.sources.genicam_aravis import import_aravis, list_aravis
    from lineside.runtime.sources.pylon import import_pylon, list_pylon

    paths = {
        "genicam": (import_aravis, lambda: list_aravis(args.address)),
        "pylon": (import_pylon, lambda: list_pylon(args.device_class)),
    }
    asked = list(paths) if args.via == "all" else [args.via]
    cameras: list[dict[str, str]] = []
    missing: list[str] = []
    for name in asked:
        check, listing = paths[name]
        try:
            check()
        except LinesideError as exc:  # the extra is not installed: a note, unless nothing else can be asked
            missing.append(str(exc))
            continue
        cameras += listing()
    if len(missing) == len(asked):
        raise LinesideError(" / ".join(missing))
    return cameras, missing


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside cameras`."""
    cameras, missing = _found(args)
    for note in missing:
        sys.stderr.write(f"lineside cameras: note: {note}\n")
    if args.json:
        sys.stdout.write(json.dumps(cameras, indent=2) + "\n")
        return 0
    for camera in cameras:
        sys.stdout.write(
            f"{camera['url']}  {camera['vendor']} {camera['model']}  serial {camera['serial']}  "
            f"{camera['address']} ({camera['protocol']})\n"
        )
    if not cameras:
        sys.stdout.write("no camera found\n")
    return 0
