"""What `lineside deploy` was asked to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DeployOptions:
    """What `lineside deploy` was asked to do."""

    remote_dir: str = "lineside"
    target_lineside: tuple[str, ...] = ("lineside",)
    build_on_target: bool = False
    build_args: tuple[str, ...] = ()
    smoke: bool = True
    smoke_image: Path | None = None
    smoke_backend: str = "auto"
    service: bool = False
    service_source: str | None = None
    service_actuator: str = "log://"
    service_args: tuple[str, ...] = ()
    keep: int = 3
