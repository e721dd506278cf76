"""decide_batch with the real embedded model: the same decisions as decide, one context at a time."""

from __future__ import annotations

import pytest

from flexrl.encoders import EncoderConfig, encode, fixed_prefix
from flexrl.envs import ArenaEnv
from flexrl.planners.base import Instruction, PlanContext
from flexrl.skills.library import candidate_calls


def _contexts(texts: list[str]) -> list[PlanContext]:
    env = ArenaEnv(ball_mode="drift")
    contexts = []
    for seed, text in enumerate(texts):
        env.reset(seed=seed % 4)
        w = env.world_state()
        # the odd ones with the pads cached, the others without
        fixed = len(fixed_prefix(w, EncoderConfig())) if seed % 2 else 0
        contexts.append(PlanContext(w, encode(w, EncoderConfig()), (Instruction(text),), tuple(candidate_calls(w)),
                                    observation_fixed=fixed))
    return contexts


@pytest.mark.slow
def test_decide_batch_matches_decide():
    from flexrl.llm.transformers_backend import TransformersBackend
    from flexrl.planners.llm_planner import LLMPlanner

    planner = LLMPlanner(TransformersBackend(threads=1))
    # the last repeats the first layout
    contexts = _contexts(["Avoid the ball!", "Go to the red pad", "Go north", "Stop!", "Go to the red pad"])
    one_by_one = [planner.decide(c) for c in contexts]
    batched = planner.decide_batch(contexts)
    assert [d.call for d in batched] == [d.call for d in one_by_one]
    for a, b in zip(batched, one_by_one):
        assert a.scores.keys() == b.scores.keys()
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-3


@pytest.mark.slow
def test_nan_weights_make_every_decision_a_fault_single_and_batched():
    import torch

    from flexrl.llm.transformers_backend import TransformersBackend
    from flexrl.planners.llm_planner import LLMPlanner, NonFiniteScoreError

    backend = TransformersBackend(threads=1)
    with torch.no_grad():  # what a corrupted model cache gave before loads checked the weights: "margin nan"
        backend.model.model.norm.weight[0] = float("nan")
    planner = LLMPlanner(backend)
    contexts = _contexts(["Avoid the ball!", "Go to the red pad", "Go north"])
    with pytest.raises(NonFiniteScoreError, match="=nan"):
        planner.decide(contexts[0])
    outcomes = planner.decide_batch(contexts)
    assert [type(o) for o in outcomes] == [NonFiniteScoreError] * 3
    assert all(str(o).startswith(f"{backend.name} gave non-finite") for o in outcomes)
