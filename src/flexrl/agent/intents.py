"""Intents: the machine-readable skill calls that fulfil instructions, checked against the arena.

An intent is one skill call the planner could choose in the arena (``go_to(red_pad)``), or a sequence of
them separated by ``;`` (the oracle runs its steps in order). The oracle follows intents and the runner
judges instructions by them, so one that names an unknown skill or object is refused where it enters:
a config error at start-up, a 400 over HTTP, a note in the event log from any other live source.
"""

from __future__ import annotations

from flexrl.envs.registration import make_arena
from flexrl.envs.world import WorldState
from flexrl.planners.oracle import SEQUENCE_SEPARATOR
from flexrl.skills.library import SKILLS, SkillCall, candidate_calls


def arena_world(robot=None) -> WorldState:
    """The world state of a fresh arena holding ``robot``: the objects an intent may name are its objects."""
    env = make_arena(robot)
    try:
        return env.world_state()
    finally:
        env.close()


class IntentChecker:
    """Parses intents into skill calls valid in an arena, or says which calls are allowed.

    Args:
        world: any state of the arena (only its object names matter).
    """

    def __init__(self, world: WorldState) -> None:
        self.calls = candidate_calls(world)
        args: dict[str, list[str]] = {}
        for call in self.calls:
            args.setdefault(call.name, []).extend(call.args)
        self.allowed = ", ".join(f"{name}({'|'.join(a)})" if a else name for name, a in args.items())
        """The valid calls in one line, e.g. ``move(north|...), go_to(ball|red_pad|...), ..., stop``."""

    def parse(self, intent: object) -> tuple[SkillCall, ...]:
        """The calls of ``intent`` (one, or the steps of a sequence).

        Raises:
            ValueError: one line saying what is wrong and listing the allowed calls.
        """
        if not isinstance(intent, str):
            raise ValueError(f"an intent is a skill call as text, not {type(intent).__name__}; allowed: {self.allowed}")
        calls = []
        for part in intent.split(SEQUENCE_SEPARATOR):
            try:
                call = SkillCall.parse(part)
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not of the form name(arg, ...); allowed: {self.allowed}") from None
            if call.name not in SKILLS:
                raise ValueError(f"unknown skill {call.name!r}; allowed: {self.allowed}")
            if call not in self.calls:
                raise ValueError(f"{call.name} does not take ({', '.join(call.args)}); allowed: {self.allowed}")
            calls.append(call)
        return tuple(calls)
