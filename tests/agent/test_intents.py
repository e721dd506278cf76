"""Intents are checked against the real arena's skill calls, with the allowed calls in the one-line error."""

import pytest

from flexrl.agent.intents import IntentChecker, arena_world
from flexrl.skills.library import SkillCall


@pytest.fixture(scope="module")
def intents():
    return IntentChecker(arena_world())


def test_allowed_lists_every_skill_with_its_arguments(intents):
    assert intents.allowed.startswith("move(north|north_east|east|")
    assert "go_to(ball|red_pad|green_pad|blue_pad|yellow_pad)" in intents.allowed
    assert intents.allowed.endswith(", stop, done, cannot")


@pytest.mark.parametrize("intent, calls", [
    ("go_to(red_pad)", (SkillCall("go_to", ("red_pad",)),)),
    (" avoid( ball ) ", (SkillCall("avoid", ("ball",)),)),
    ("stop", (SkillCall("stop"),)),
    ("go_to(red_pad); go_to(blue_pad)", (SkillCall("go_to", ("red_pad",)), SkillCall("go_to", ("blue_pad",)))),
])
def test_valid_intents_parse(intents, intent, calls):
    assert intents.parse(intent) == calls


@pytest.mark.parametrize("intent, reason", [
    ("fly(moon)", "unknown skill 'fly'"),
    ("go_to(purple_pad)", "go_to does not take (purple_pad)"),
    ("move(up)", "move does not take (up)"),
    ("stop(ball)", "stop does not take (ball)"),
    ("go_to((1.0, 0.5))", "go_to does not take ((1.0, 0.5))"),
    ("go_to(ball);", "'' is not of the form name(arg, ...)"),
    ("rm -rf /", "'rm -rf /' is not of the form"),
    ({"a": 1}, "not dict"),
    (3, "not int"),
])
def test_invalid_intents_are_one_line_naming_the_allowed_calls(intents, intent, reason):
    with pytest.raises(ValueError) as err:
        intents.parse(intent)
    message = str(err.value)
    assert reason in message and "allowed: move(" in message and "\n" not in message
