"""The fault schedule: which fault hits the line at which part, drawn once from a seed.

Part-level faults (the camera applies them to one frame): `drop` (a burst of 1-4 frame ids skipped),
`corrupt` (a truncated JPEG). Connection faults (the camera's link hangs or closes): `stall`,
`disconnect`. Outages of a stand-in for a drawn time: `serial_loss` (socat killed and restarted),
`modbus_restart` (the PLC server stopped and started), `encoder_fail` (the PLC answers counter reads
with an exception; all in the middle segment, the one that runs with --encoder), `disk_full` (the reject store's tmpfs
filled up). `restart`: SIGTERM to the runtime and a new process (segment boundary).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

PART_FAULTS = ("drop", "corrupt")
LINK_FAULTS = ("stall", "disconnect")
OUTAGES = ("serial_loss", "modbus_restart", "encoder_fail", "disk_full")
KINDS = (*PART_FAULTS, *LINK_FAULTS, *OUTAGES, "restart")
PER_10K = {
    "drop": 20, "corrupt": 20, "stall": 6, "disconnect": 6, "serial_loss": 5, "modbus_restart": 5,
    "encoder_fail": 4, "disk_full": 3, "restart": 4,
}  # fmt: skip
OUTAGE_S = {
    "serial_loss": (1.0, 2.0),
    "modbus_restart": (0.5, 1.5),
    "encoder_fail": (0.5, 1.5),
    "disk_full": (2.0, 4.0),
}
MARGIN = 30  # parts kept clear of faults after each (re)start and before each stop
SEPARATION = 6  # parts between a frame fault and any other fault


@dataclass(frozen=True)
class Fault:
    """One injection: `kind` at part `part`; `count` frames for drop, `duration_s` for outages."""

    kind: str
    part: int
    count: int = 1
    duration_s: float = 0.0


@dataclass
class Plan:
    """Faults sorted by part, the restart points and which segments run in encoder mode."""

    parts: int
    seed: int
    faults: list[Fault] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)
    encoder_segments: list[int] = field(default_factory=list)

    def segment_of(self, part: int) -> int:
        """Index of the runtime process (segment) that sees `part`."""
        return sum(part >= r for r in self.restarts)

    def to_json(self) -> dict:
        return {**asdict(self), "faults": [asdict(f) for f in self.faults]}


def count_for(kind: str, parts: int) -> int:
    """How many `kind` faults a run of `parts` parts gets (at least one of each chosen kind)."""
    return max(1, round(PER_10K[kind] * parts / 10_000))


def spread(count: int, low: int, high: int, rng: random.Random) -> list[int]:
    """`count` positions in [low, high), evenly spaced with jitter of a quarter spacing."""
    if count <= 0 or high <= low:
        return []
    step = (high - low) / count
    return sorted(int(low + (i + 0.5) * step + rng.uniform(-step / 4, step / 4)) for i in range(count))


def make_plan(parts: int, kinds: tuple[str, ...], seed: int) -> Plan:
    """The schedule for `parts` parts and the chosen fault `kinds`, from `seed`."""
    rng = random.Random(seed)
    plan = Plan(parts=parts, seed=seed)
    if "restart" in kinds:
        plan.restarts = spread(count_for("restart", parts), MARGIN * 2, parts - MARGIN * 2, rng)
    bounds = [0, *plan.restarts, parts]
    clear = [(b - MARGIN, b + MARGIN) for b in bounds]
    timed = [
        k for k in (*LINK_FAULTS, *OUTAGES) if k in kinds and k != "encoder_fail" for _ in range(count_for(k, parts))
    ]
    rng.shuffle(timed)
    places = spread(len(timed), MARGIN, parts - MARGIN, rng)
    if "encoder_fail" in kinds:  # one segment, the middle one, runs with --encoder and gets every encoder fault
        middle = len(bounds) // 2 - 1
        plan.encoder_segments = [middle]
        encoder = spread(count_for("encoder_fail", parts), bounds[middle] + MARGIN, bounds[middle + 1] - MARGIN, rng)
        timed, places = timed + ["encoder_fail"] * len(encoder), places + encoder
    for kind, part in zip(timed, places, strict=True):
        part = _clear_of(part, clear, parts)
        low, high = OUTAGE_S.get(kind, (0.0, 0.0))
        plan.faults.append(Fault(kind, part, duration_s=round(rng.uniform(low, high), 2)))
    for kind in (k for k in PART_FAULTS if k in kinds):
        for part in spread(count_for(kind, parts), MARGIN, parts - MARGIN, rng):
            count = rng.randint(1, 4) if kind == "drop" else 1
            plan.faults.append(Fault(kind, _free_part(part, plan.faults, clear, parts), count=count))
    plan.faults.sort(key=lambda f: f.part)
    return plan


def _free_part(part: int, faults: list[Fault], clear: list[tuple[int, int]], parts: int) -> int:
    """The part nearest `part` that is at least SEPARATION from every planned fault and clear of the margins."""
    for step in range(parts):
        for candidate in (part + step, part - step):
            free = all(not f.part - SEPARATION < candidate < f.part + f.count + SEPARATION for f in faults)
            if free and 0 <= candidate < parts and all(not low <= candidate < high for low, high in clear):
                return candidate
    return _clear_of(part, clear, parts)


def _clear_of(part: int, clear: list[tuple[int, int]], parts: int) -> int:
    """`part` moved out of any (re)start or stop margin it falls into."""
    for low, high in clear:
        if low <= part < high:
            return high if high < parts else low - 1
    return part
