"""Results records, property-based (issue 16, finding 3): what `lineside run` writes is strict JSON, and whatever
a results log holds, `lineside review` indexes it without an exception and serves only well-typed decisions."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineside.runtime.dashboard.review import VERDICTS, Filter, ReviewLog
from lineside.runtime.results import ResultsLog

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)

PART = st.fixed_dictionaries(
    {
        "type": st.just("part"),
        "part_id": st.integers(0, 2**40),
        "capture_time": FINITE,
        "decision_time": FINITE,
        "verdict": st.sampled_from(VERDICTS),
        "score": st.none() | FINITE,
        "threshold": FINITE,
        "reason": st.none() | st.text(max_size=20),
        "eject": st.sampled_from(["none", "ejected", "eject_failed", "not_ejected_fail_open"]),
        "latency_ms": st.fixed_dictionaries({"infer": FINITE, "total": FINITE}),
    }
)


def _mutated(record: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    return record | {field: value}


@FAST
@given(
    records=st.lists(PART | PART.flatmap(lambda r: st.builds(_mutated, st.just(r), st.sampled_from(sorted(r)), JSON)))
)
def test_results_log_writes_strict_json_lines_or_refuses_the_record(records: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.jsonl"
        log = ResultsLog(path, run_id="run1")
        written = []
        for record in records:
            try:
                log.write(record)
            except ValueError:  # NaN/inf: refused whole, never written as a token a strict reader rejects
                continue
            written.append({"run_id": "run1", **record})
        log.close()
        lines = path.read_text(encoding="utf-8").splitlines()

    def strict(token: str) -> float:
        raise AssertionError(f"non-JSON number {token} in the log")

    assert [json.loads(line, parse_constant=strict) for line in lines] == written


@FAST
@given(
    records=st.lists(
        PART.map(lambda r: ("good", r))
        | PART.flatmap(lambda r: st.builds(_mutated, st.just(r), st.sampled_from(sorted(r)), JSON)).map(
            lambda r: ("maybe", r)
        )
        | st.binary(max_size=30).map(lambda b: ("junk", b)),
        max_size=12,
    )
)
def test_review_indexes_any_log_and_serves_only_well_typed_decisions(records: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.jsonl"
        with open(path, "wb") as handle:
            for kind, record in records:
                line = record.replace(b"\n", b" ") if kind == "junk" else json.dumps(record).encode()
                handle.write(line + b"\n")
        review = ReviewLog(path)
        page = review.query(Filter(), 0, 100)
    json.dumps(page, allow_nan=False)  # the page is servable as strict JSON
    good = sum(kind == "good" for kind, _ in records)
    assert good <= page["total"] <= len(records)
    assert page["total"] + review.bad_lines + review.bad_records <= len(records)
    for item in page["items"]:
        assert item["verdict"] in VERDICTS and type(item["part_id"]) is int and item["part_id"] >= 0
        assert item["score"] is None or (type(item["score"]) is float and math.isfinite(item["score"]))
