"""Part records that wait for their pulse: a rejected part is logged once the Ejector reports what the output did.

The inference thread (or the records thread, for a timeout) makes a part's record when it is decided;
the actuation thread reports the pulse's outcome when the part has passed the ejector. Whichever comes
second writes the record, with `eject` set to the outcome (`ejected` or `eject_failed`) and its detail
(`eject_time` / `eject_count` of a confirmed pulse, or `eject_error`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import numpy as np

from lineside.runtime.decision import Eject
from lineside.runtime.ejector import EjectEvent
from lineside.runtime.results import ResultsLog

log = logging.getLogger(__name__)


class DecisionObserver(Protocol):
    """Sees every logged decision (e.g. the dashboard). Called on the line's threads: it must only store references."""

    def decided(self, record: dict[str, Any], image: np.ndarray | None, anomaly_map: np.ndarray | None) -> None:
        """`record` is the results-log line; `image` (H, W, 3) BGR and `anomaly_map` (H, W) when there are any."""


Waiting = tuple[dict[str, Any], "np.ndarray | None", "np.ndarray | None"]


class PartRecords:
    """Joins part records with pulse outcomes and writes them to the results log and the observer."""

    def __init__(self, results: ResultsLog, observer: DecisionObserver | None) -> None:
        self.results, self.observer = results, observer
        self.observer_errors = 0
        self._awaiting: dict[int, Waiting] = {}
        self._outcomes: dict[int, EjectEvent] = {}  # outcomes that arrived before their part's record (delay 0)
        self._lock = threading.Lock()

    def record(self, record: dict[str, Any], image: np.ndarray | None, anomaly_map: np.ndarray | None) -> None:
        """A decided part; written now unless its `eject` is pending."""
        if record["eject"] == Eject.PENDING.value:
            with self._lock:
                outcome = self._outcomes.pop(record["part_id"], None)
                if outcome is None:
                    self._awaiting[record["part_id"]] = (record, image, anomaly_map)
                    return
            self._write(record, image, anomaly_map, outcome)
            return
        self._write(record, image, anomaly_map)

    def outcome(self, event: EjectEvent) -> None:
        """A pulse's outcome, from the Ejector's events."""
        with self._lock:
            waiting = self._awaiting.pop(event.part_id, None)
            if waiting is None:
                self._outcomes[event.part_id] = event
                return
        self._write(*waiting, event)

    def unreported(self) -> int:
        """At the end: records still waiting for an outcome the Ejector never reported are written eject_failed."""
        with self._lock:
            waiting, self._awaiting = list(self._awaiting.values()), {}
        missing = EjectEvent(-1, Eject.FAILED, detail={"eject_error": "no outcome was reported for the pulse"})
        for record, image, anomaly_map in waiting:
            log.error("part %d: its pulse's outcome was never reported; logged eject_failed", record["part_id"])
            self._write(record, image, anomaly_map, missing)
        return len(waiting)

    def _write(
        self,
        record: dict[str, Any],
        image: np.ndarray | None,
        anomaly_map: np.ndarray | None,
        outcome: EjectEvent | None = None,
    ) -> None:
        if outcome is not None:
            record.update(eject=outcome.eject.value, **outcome.detail)
        self.results.write(record)
        if self.observer is None:
            return
        try:
            self.observer.decided(record, image, anomaly_map)
        except Exception:  # a broken dashboard must not cost the line a record or a pulse
            self.observer_errors += 1
            if self.observer_errors % 100 == 1:
                log.exception("decision observer failed (%d so far)", self.observer_errors)
