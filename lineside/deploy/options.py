"""What `lineside deploy` was asked to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeployOptions:
    """What `lineside deploy` was asked to do."""

    remote_dir: str = "lineside"
    target_lineside: tuple[str, ...] = ("lineside",)
    build_on_target: bool = False
    build_target: str | None = None
    smoke: bool = True
    service: bool = False
    service_source: str | None = None
    service_actuator: str = "log://"
    service_args: tuple[str, ...] = ()
    keep: int = 3
