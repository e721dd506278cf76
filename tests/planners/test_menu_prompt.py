"""The distilled planner's menu prompt: letters for calls, progress, normalised text, one letter scored."""

from dataclasses import dataclass

import pytest

from flexrl.envs import ArenaEnv
from flexrl.llm.base import OptionScore
from flexrl.planners import menu_prompt
from flexrl.planners.base import Instruction, Outcome, PlanContext
from flexrl.planners.config import PlannerConfig
from flexrl.planners.llm_planner import LLMPlanner
from flexrl.skills.library import SkillCall, candidate_calls


def _context(text, progress=()):
    env = ArenaEnv()
    env.reset(seed=3)
    w = env.world_state()
    env.close()
    return PlanContext(w, "obs", (Instruction("earlier one"), Instruction(text)), tuple(candidate_calls(w)), progress=progress)


def test_the_prompt_lists_every_call_under_a_letter_and_only_the_current_instruction():
    ctx = _context("  Touch the RED pad,   then the blue pad!! ",
                   (Outcome(SkillCall("go_to", ("red_pad",)), True, "reached"),))
    p = menu_prompt.for_context(ctx)
    assert p.text.startswith("Calls: A move(north), B move(north_east),")
    assert "Y done, Z cannot.\n" in p.text
    assert "Instruction: touch the red pad, then the blue pad\n" in p.text
    red = p.labels[ctx.candidates.index(SkillCall("go_to", ("red_pad",)))].strip()
    assert f"Done: {red} ok\n" in p.text
    assert "earlier one" not in p.text  # earlier instructions stay out
    assert p.text.startswith(p.cache_prefix) and p.cache_prefix.endswith("then the blue pad\nDone:")
    assert p.text.endswith("\nAnswer:") and p.labels[:3] == (" A", " B", " C") and len(p.labels) == 26
    assert "Done: none\n" in menu_prompt.for_context(_context("stop")).text


def test_progress_names_calls_by_letter_with_their_verdict_and_writes_out_a_call_off_the_menu():
    calls = (SkillCall("stop"), SkillCall("go_to", ("red_pad",)))
    marks = menu_prompt.labels(len(calls))
    progress = (Outcome(calls[1], True, "reached"), Outcome(calls[0], False, "still moving"),
                Outcome(SkillCall("go_to", ("purple_pad",)), False, "did not reach it"))
    assert menu_prompt.progress_marks(progress, calls, marks) == "B ok, A failed, go_to(purple_pad) failed"
    assert menu_prompt.build("stop", progress[:1], calls).text.endswith("Done: B ok\nAnswer:")


def test_many_candidates_get_two_letter_labels():
    assert menu_prompt.labels(3) == (" A", " B", " C")
    two = menu_prompt.labels(30)
    assert two[0] == " AA" and len(set(two)) == 30


@dataclass
class Card:
    prompt: str = menu_prompt.FORMAT
    path: str = "adapter"
    info: dict = None


class MenuBackend:
    """Scores letters; prefers the letter of avoid(ball) when the instruction mentions avoiding."""

    name = "fake-adapted"
    adapter_card = Card()

    def __init__(self):
        self.seen = []

    def score_options(self, prompt, options, cache_prefix=None):
        self.seen.append((prompt, tuple(options), cache_prefix))
        want = " S" if "avoid" in prompt.split("Instruction:")[1] else " X"
        return [OptionScore(-0.1 if o == want else -4.0, 1) for o in options]


def test_an_adapter_trained_on_the_menu_gets_the_menu_and_no_calibration():
    backend = MenuBackend()
    planner = LLMPlanner(backend, PlannerConfig())
    assert planner.format == "menu"
    decision = planner.decide(_context("Avoid the ball!"))
    assert decision.call == SkillCall("avoid", ("ball",))
    assert len(backend.seen) == 1  # no content-free calibration pass
    prompt, options, prefix = backend.seen[0]
    assert options[0] == " A" and prompt.startswith(prefix) and prompt.endswith("Answer:")
    assert set(decision.scores) == {str(c) for c in _context("x").candidates}


def test_an_adapter_of_another_prompt_format_is_refused_in_one_line():
    backend = MenuBackend()
    backend.adapter_card = Card(prompt="other/9")
    with pytest.raises(ValueError, match="trained on prompt 'other/9'"):
        LLMPlanner(backend, PlannerConfig())
    assert LLMPlanner(backend, PlannerConfig(prompt="chat")).format == "chat"


def test_an_arena_with_other_calls_than_the_adapter_was_trained_on_is_a_fault_not_a_wrong_letter():
    from flexrl.llm.base import LLMError

    backend = MenuBackend()
    backend.adapter_card = Card()
    backend.adapter_card.info = {"candidates": ["stop", "done", "cannot"]}
    with pytest.raises(LLMError, match="trained on 3 calls"):
        LLMPlanner(backend, PlannerConfig()).decide(_context("Avoid the ball!"))
