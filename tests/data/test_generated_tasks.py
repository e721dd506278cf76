"""Generated tasks: success rules per intent, and never a benchmark instruction."""

import pytest

from flexrl.bench.tasks import default_suite, load_tasks
from flexrl.data.tasks import checks_for, generate_tasks


@pytest.mark.parametrize("intent, predicates", [
    ("move(north)", ["moved"]), ("go_to(red_pad)", ["reached"]), ("go_to(ball)", ["reached"]),
    ("follow(ball)", ["followed"]), ("avoid(ball)", ["kept_away"]), ("stop", ["stopped", "stayed_near_start"]),
    ("cannot", ["refused", "stayed_near_start"]), ("go_to(red_pad); go_to(blue_pad)", ["reached_in_order"]),
    ("go_to(red_pad); avoid(ball)", []),
])
def test_each_intent_has_its_rule(intent, predicates):
    assert [c.predicate for c in checks_for(intent)] == predicates


def test_touching_the_ball_need_not_last_but_a_pad_must():
    assert checks_for("go_to(ball)")[0].args["stay"] is False
    assert checks_for("go_to(red_pad)")[0].args["stay"] is True


def test_unknown_intent_is_one_line():
    with pytest.raises(ValueError, match="'dance'.*allowed: move"):
        checks_for("dance")


def test_generation_is_seeded_and_varied():
    a, b = generate_tasks(60, seed=4), generate_tasks(60, seed=4)
    assert [t.instructions for t in a] == [t.instructions for t in b]
    assert {t.category for t in a} >= {"literal_motion", "object_goal", "switch", "impossible"}
    assert any(len(t.instructions) == 2 for t in a) and any(not t.solvable for t in a)
    with pytest.raises(ValueError, match="n=0"):
        generate_tasks(0)


def test_no_benchmark_instruction_is_generated():
    """Never verbatim; case-folded, only the commonest short commands ("avoid the ball") coincide."""
    suite = [ins.text for t in load_tasks([default_suite()]) for ins in t.instructions]
    generated = [ins.text for t in generate_tasks(2000, seed=0) for ins in t.instructions]
    assert not set(suite) & set(generated)
    folded = {s.lower().strip(" .!?") for s in suite}
    same = [g for g in generated if g.lower().strip(" .!?") in folded]
    assert len(same) / len(generated) < 0.02, sorted(set(same))
