"""The short "menu" prompt of the distilled planner: every call under a letter, the answer one letter.

```
Calls: A move(north), B move(north_east), ..., I go_to(ball), J go_to(red_pad), ..., Y done, Z cannot.
Instruction: touch the red pad, then the blue pad
Done: J ok
Answer:
```

The model scores the letters " A" ... " Z" as the next token, so a decision reads only what changed since
the memoised prefix (which runs up to ``Done:``): the progress and ``Answer:``, in one forward pass, and no
option tokens at all: the call texts sit in the cached menu, which is the same for every decision of a
run. Progress names each call that ran by its menu letter and says ``ok`` or ``failed`` (its success
detector's verdict), ``none`` before the first: one outcome is 5 fed tokens (`` J ok\nAnswer:``), where
``menu/1``'s words ("go_to(red_pad) reached.") made 13 and a decision's cost follows the tokens it feeds
(docs/distill.md). The world enters as the menu (the calls valid here name every object there is) and as
the skills' success detectors; coordinates are left out: the planner picks skills and the skills do the
geometry, and every token of the prompt costs training time and decision time. The instruction is read
lower-cased (:func:`normalise`). Candidates beyond 26 get two-letter labels.

This is the format ``flexrl distill`` trains on (the adapter's card names it, ``prompt: menu/2``); the
untrained model keeps the chat prompt with whole-call scoring (``flexrl.planners.llm_planner``).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from flexrl.planners.base import Outcome, PlanContext
from flexrl.skills.library import SkillCall

FORMAT = "menu/2"
NOTHING_YET = "none"
VERDICT = {True: "ok", False: "failed"}


@dataclass(frozen=True)
class MenuPrompt:
    """One decision's prompt.

    Attributes:
        text: the whole prompt, ending with "Answer:".
        cache_prefix: its leading part that recurs: the menu, the instruction and "Done:". The progress
            and "Answer:" are read with the letters' scores in one pass (one forward pass per decision).
        labels: the answer text of each candidate, in candidate order (" A", " B", ...).
    """

    text: str
    cache_prefix: str
    labels: tuple[str, ...]


def labels(n: int) -> tuple[str, ...]:
    """Answer labels for ``n`` candidates: " A".." Z", then " AA", " AB", ..."""
    letters = string.ascii_uppercase
    singles = [f" {c}" for c in letters]
    if n <= len(singles):
        return tuple(singles[:n])
    return tuple(f" {a}{b}" for a in letters for b in letters)[:n]


def normalise(text: str) -> str:
    """The instruction as the distilled planner reads it: lower case, spaces collapsed, no final punctuation."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .!?;,")


def progress_words(progress: tuple[Outcome, ...]) -> str:
    """The outcomes under the current instruction in words, oldest first ("go_to(red_pad) reached."; the chat prompt's)."""
    return "; ".join(f"{o.call} {o.text}" for o in progress) + "." if progress else "nothing yet"


def progress_marks(progress: tuple[Outcome, ...], candidates: tuple[SkillCall, ...], marks: tuple[str, ...]) -> str:
    """The ``Done:`` line's content: each outcome as its call's menu letter and ``ok``/``failed``, oldest first.

    A call missing from the menu (the world changed under it) is written out instead of its letter.
    """
    letter = {c: m.strip() for c, m in zip(candidates, marks)}
    return ", ".join(f"{letter.get(o.call, o.call)} {VERDICT[o.success]}" for o in progress) if progress else NOTHING_YET


def build(instruction: str, progress: tuple[Outcome, ...], candidates: tuple[SkillCall, ...]) -> MenuPrompt:
    """The prompt for these parts (the training data builds it from the same parts)."""
    marks = labels(len(candidates))
    menu = ", ".join(f"{m.strip()} {c}" for m, c in zip(marks, candidates))
    prefix = f"Calls: {menu}.\nInstruction: {normalise(instruction)}\nDone:"
    return MenuPrompt(f"{prefix} {progress_marks(progress, candidates, marks)}\nAnswer:", prefix, marks)


def for_context(context: PlanContext) -> MenuPrompt:
    """The prompt of a planning context."""
    instruction = context.instruction.text if context.instruction else "none"
    return build(instruction, context.progress, context.candidates)
