"""The events log: one strict JSON object per line, each line written whole and flushed."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from flexrl.runs.atomic import jsonable

EVENT_TYPES = ("instruction", "note", "decision", "cannot", "skill_start", "skill_end", "world_event", "reaction", "fallback", "llm_fault")


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON null), numpy values as plain ones, tuples as lists.

    Python's json writes non-finite floats as ``NaN``/``Infinity``, which strict parsers (JavaScript,
    jq, most languages' JSON libraries) reject; null says "no number" in any of them.
    """
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return strict_json(jsonable(value))  # numpy scalars and arrays, paths


class EventLog:
    """Append-only JSONL log; ``events`` keeps the same records in memory for the summary."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._file = open(self.path, "a", encoding="utf-8") if self.path else None
        self._t0 = time.perf_counter()
        self.events: list[dict[str, Any]] = []

    def emit(self, type_: str, step: int, **fields: Any) -> dict[str, Any]:
        """Record an event of a known type at a control step (non-finite numbers are written as null)."""
        if type_ not in EVENT_TYPES:
            raise ValueError(f"event type {type_!r}; allowed: {', '.join(EVENT_TYPES)}")
        record = strict_json({"type": type_, "step": step, "t": round(time.perf_counter() - self._t0, 4), **fields})
        self.events.append(record)
        if self._file:
            # one write per line: a crash leaves whole lines only (at worst the last one missing)
            self._file.write(json.dumps(record, allow_nan=False) + "\n")
            self._file.flush()
        return record

    def close(self) -> None:
        """Close the file."""
        if self._file:
            self._file.close()
            self._file = None
