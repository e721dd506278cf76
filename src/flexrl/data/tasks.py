"""Tasks for recording datasets, generated: the distillation grammar's instructions in random layouts.

Training data never reads the benchmark suite (it is evaluation data): these tasks come from
:class:`flexrl.distill.grammar.Grammar`, whose templates are written apart from the suite, with success
checks derived from each instruction's intent by one rule per skill (:func:`checks_for`). A quarter of
the episodes switch to a second instruction part-way, as the suite's switch tasks do.
"""

from __future__ import annotations

import numpy as np

from flexrl.bench.tasks import Check, Task, TimedInstruction
from flexrl.distill.grammar import Grammar
from flexrl.skills.library import SkillCall

KIND_CATEGORY = {
    "move": "literal_motion", "goto_pad": "object_goal", "goto_ball": "object_goal", "follow": "follow_ball",
    "avoid": "avoid_ball", "stop": "literal_motion", "sequence": "sequence", "negation": "paraphrase",
    "distractor": "distractor", "switch": "switch", "cannot": "impossible",
}
"""The benchmark category each grammar kind falls in (for the dataset's task mix)."""
BALL_MODES = ("still", "drift", "chase")
SINGLE_STEPS, SEQUENCE_STEPS, SWITCH_STEPS = 160, 320, 280
SWITCH_AT = (80, 140)
SWITCH_SHARE = 0.25
"""Share of episodes that get a second instruction at a step in ``SWITCH_AT``."""
LIMIT = 1.6
"""The agent starts anywhere within this many (orb) metres of the centre."""


def checks_for(intent: str) -> tuple[Check, ...]:
    """The success checks of an intent; () for one that is not judged (a sequence with a non-reach step).

    Raises:
        ValueError: an intent of no known skill (one line naming it).
    """
    calls = [SkillCall.parse(part) for part in intent.split(";")]
    if len(calls) > 1:
        if all(c.name == "go_to" for c in calls):
            return (Check("reached_in_order", {"targets": [c.args[0] for c in calls]}),)
        return ()
    call = calls[0]
    if call.name == "move":
        return (Check("moved", {"direction": call.args[0], "min_distance": 0.6}),)
    if call.name == "go_to":
        target = call.args[0]
        return (Check("reached", {"target": target, "stay": target != "ball"}),)
    if call.name == "follow":
        return (Check("followed", {"target": call.args[0]}),)
    if call.name == "avoid":
        return (Check("kept_away", {"target": call.args[0]}),)
    if call.name == "stop":
        return Check("stopped"), Check("stayed_near_start")
    if call.name == "cannot":
        return Check("refused"), Check("stayed_near_start")
    raise ValueError(f"intent {intent!r}: no success rule for {call.name!r}; allowed: move, go_to, follow, avoid, stop, cannot")


def generate_tasks(n: int, seed: int = 0) -> list[Task]:
    """``n`` seeded tasks: one grammar instruction each, a quarter with a switch to a second one.

    Raises:
        ValueError: ``n`` below 1.
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n={n!r}; allowed: an integer >= 1")
    rng = np.random.default_rng(seed)
    grammar = Grammar()
    tasks = []
    for i in range(n):
        first = grammar.sample(rng, weights={k: 1.0 for k in grammar.kinds if k != "switch"})
        schedule = [TimedInstruction(0, first.text, first.intent, checks_for(first.intent))]
        steps = SEQUENCE_STEPS if ";" in first.intent else SINGLE_STEPS
        category = KIND_CATEGORY[first.kind]
        if rng.random() < SWITCH_SHARE:
            second = grammar.sample(rng, "switch")
            schedule.append(TimedInstruction(SWITCH_AT, second.text, second.intent, checks_for(second.intent)))
            steps, category = SWITCH_STEPS, "switch"
        layout = {"ball_mode": str(rng.choice(BALL_MODES)), "agent": {"x": [-LIMIT, LIMIT], "y": [-LIMIT, LIMIT]}}
        tasks.append(Task(f"gen-{seed}-{i}", category, steps, layout, tuple(schedule), first.template,
                          solvable=first.intent != "cannot", source="flexrl.data.tasks"))
    return tasks
