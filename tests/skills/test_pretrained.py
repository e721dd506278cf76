"""The shipped checkpoints meet their bar. 30 episodes per skill here; bench/skills_success.py runs 100."""

import pytest

from flexrl.skills.evaluate import evaluate_skill
from flexrl.skills.library import MOTOR_SKILLS as SKILLS
from flexrl.skills.policies import PolicySet, checkpoint_meta


@pytest.fixture(scope="module")
def policies():
    return PolicySet.load()


@pytest.mark.parametrize("skill", list(SKILLS))
def test_shipped_skill_succeeds(policies, skill):
    result = evaluate_skill(policies, skill, episodes=30, seed=70_000)
    # >= 28/30: a true 95% skill fails this about 1 time in 5 at worst; the 100-episode bench is the bar
    assert result.successes >= 27, f"{skill}: {result.successes}/30"


def test_shipped_checkpoints_describe_themselves():
    meta = checkpoint_meta()
    assert set(meta) == {"reach", "avoid"}
    for m in meta.values():
        assert m["steps"] > 0 and "learning_rate" in m["ppo"]
