"""The short "menu" prompt of the distilled planner: every call under a letter, the answer one letter.

```
Calls: A move(north), B move(north_east), ..., Y done, Z cannot.
Arena: (units: dm) Red pad: (-40, 10), Green pad: (30, 12), Blue pad: (5, -30), Yellow pad: (-20, 40)
Instruction: Touch the red pad, then the blue pad
Done: go_to(red_pad) reached.
Answer:
```

The model scores the letters " A" ... " Z" as the next token, so a decision reads only what changed since
the memoised prefix (usually the ``Done:`` line and ``Answer:``) and no option tokens at all: the call
texts sit in the cached menu, which is the same for every decision of a run. The arena line is the
observation's fixed part (the pads); the agent's and the ball's positions are left out, since the
planner picks skills and the skills do the geometry. Candidates beyond 26 get two-letter labels.

This is the format ``flexrl distill`` trains on (the adapter's card names it, ``prompt: menu/1``); the
untrained model keeps the chat prompt with whole-call scoring (``flexrl.planners.llm_planner``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from flexrl.planners.base import Outcome, PlanContext
from flexrl.skills.library import SkillCall

FORMAT = "menu/1"
NOTHING_YET = "nothing yet"


@dataclass(frozen=True)
class MenuPrompt:
    """One decision's prompt.

    Attributes:
        text: the whole prompt, ending with "Answer:".
        cache_prefix: its leading part that recurs (everything before "Answer:").
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


def arena_text(context: PlanContext) -> str:
    """What the prompt says of the arena: the observation's fixed part (the pads), else the whole observation."""
    n = context.observation_fixed
    return (context.observation[:n] if n else context.observation).rstrip(" ,")


def progress_text(progress: tuple[Outcome, ...]) -> str:
    """The ``Done:`` line's content: the outcomes under the current instruction, oldest first."""
    return "; ".join(f"{o.call} {o.text}" for o in progress) + "." if progress else NOTHING_YET


def build(instruction: str, arena: str, progress: tuple[Outcome, ...], candidates: tuple[SkillCall, ...]) -> MenuPrompt:
    """The prompt for these parts (the training data builds it from the same parts)."""
    marks = labels(len(candidates))
    menu = ", ".join(f"{m.strip()} {c}" for m, c in zip(marks, candidates))
    prefix = (f"Calls: {menu}.\nArena: {arena}\nInstruction: {instruction}\n"
              f"Done: {progress_text(progress)}\n")
    return MenuPrompt(prefix + "Answer:", prefix, marks)


def for_context(context: PlanContext) -> MenuPrompt:
    """The prompt of a planning context."""
    instruction = context.instruction.text if context.instruction else "none"
    return build(instruction, arena_text(context), context.progress, context.candidates)
