"""Cleaning raw instruction input into prompt text, with a note on every change.

Instructions are only ever text for the prompt: nothing in one is executed or used as a path. Bad input
(not text, empty, huge, binary, control characters) is cleaned or dropped, and each cleaning step is named
in a note for the event log.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from flexrl.planners.base import Instruction

MAX_CHARS = 500
"""Longer instructions are truncated: the prompt stays small and the decision fast."""
_KEPT_CONTROLS = " \t\n\r"  # whitespace: collapsed to one space, not counted as removed


@dataclass(frozen=True)
class Arrival:
    """An instruction as it arrived (None: dropped), with a note on any cleaning it needed."""

    instruction: Instruction | None
    note: str | None


def sanitise(raw: object, source: str, intent: str | None = None) -> Arrival:
    """Clean raw input into an instruction, or drop it; any cleaning is named in the note.

    Control and format characters are removed, whitespace collapsed, text over MAX_CHARS truncated.
    Input that is not text, empty after cleaning, or mostly undecodable bytes is dropped. Never raises.
    """
    notes = []
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - raw.decode("utf-8", errors="ignore").count("\ufffd")
        if bad > max(3, len(text) // 4):
            return Arrival(None, f"{source} instruction: dropped {len(raw)} bytes of binary input")
        if bad:
            notes.append(f"replaced {bad} undecodable bytes")
    elif isinstance(raw, str):
        text = raw
    else:
        return Arrival(None, f"{source} instruction: dropped a {type(raw).__name__}; allowed: text")
    cleaned = "".join(ch for ch in text if ch in _KEPT_CONTROLS or unicodedata.category(ch)[0] != "C")
    if len(cleaned) != len(text):
        notes.append(f"removed {len(text) - len(cleaned)} control characters")
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if not cleaned:
        return Arrival(None, f"{source} instruction: dropped an empty instruction ({len(text)} characters before cleaning)")
    if len(cleaned) > MAX_CHARS:
        notes.append(f"truncated from {len(cleaned)} to {MAX_CHARS} characters")
        cleaned = cleaned[:MAX_CHARS].rstrip()
    note = f"{source} instruction: {'; '.join(notes)}" if notes else None
    return Arrival(Instruction(cleaned, intent, source), note)
