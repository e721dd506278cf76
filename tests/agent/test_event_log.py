"""events.jsonl is strict JSON: NaN, infinities and numpy values are written so any JSON parser reads them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexrl.agent.event_log import EventLog, strict_json


def _reject(constant: str):
    raise ValueError(f"non-standard JSON constant {constant}")


def strict_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed by a parser that rejects NaN, Infinity and -Infinity."""
    return [json.loads(line, parse_constant=_reject) for line in path.read_text().splitlines()]


def test_the_strict_parser_rejects_what_python_writes_by_default(tmp_path):
    (tmp_path / "plain.jsonl").write_text(json.dumps({"margin": float("nan")}) + "\n")
    with pytest.raises(ValueError, match="NaN"):
        strict_lines(tmp_path / "plain.jsonl")


def test_non_finite_and_numpy_values_are_written_as_strict_json(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    log.emit("decision", 3, call="move(north)", margin=float("nan"),
             scores={"move(north)": float("nan"), "stop": float("-inf"), "go_to(ball)": np.float32(-1.5)})
    log.emit("note", 4, values=(float("inf"), np.float64("nan"), np.int64(7), np.bool_(True)),
             array=np.array([1.0, np.nan, np.inf]), path=Path("/tmp/x"), nested=[{"a": [float("-inf")]}])
    log.close()
    decision, note = strict_lines(tmp_path / "events.jsonl")
    assert decision["margin"] is None
    assert decision["scores"] == {"move(north)": None, "stop": None, "go_to(ball)": -1.5}
    assert note["values"] == [None, None, 7, True] and note["array"] == [1.0, None, None]
    assert note["path"] == "/tmp/x" and note["nested"] == [{"a": [None]}]
    # the in-memory records are the ones written
    assert log.events[0]["margin"] is None and log.events[1]["array"] == [1.0, None, None]


def test_unknown_types_still_raise():
    with pytest.raises(TypeError, match="object"):
        strict_json({"x": object()})


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


def _same(written, read) -> bool:
    """``read`` is ``written`` with non-finite floats as None."""
    if isinstance(written, float):
        return read is None if not math.isfinite(written) else read == written
    if isinstance(written, dict):
        return written.keys() == read.keys() and all(_same(v, read[k]) for k, v in written.items())
    if isinstance(written, list):
        return len(written) == len(read) and all(_same(a, b) for a, b in zip(written, read))
    return written == read


@settings(max_examples=200, deadline=None)
@given(_values)
def test_any_value_round_trips_through_a_strict_parser(value):
    line = json.dumps(strict_json({"v": value}), allow_nan=False)
    assert _same(value, json.loads(line, parse_constant=_reject)["v"])
