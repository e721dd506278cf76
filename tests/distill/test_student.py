"""The student: LoRA training on menu prompts really lowers the loss; checkpoints and export round-trip."""

import json

import numpy as np
import pytest
import torch

from flexrl.distill.data import arena_calls, generate
from flexrl.distill.student import LoraConfig, Student, batches
from flexrl.llm.adapters import read_card
from flexrl.planners import menu_prompt


@pytest.fixture(scope="module")
def student():
    from flexrl.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(cpu_weights="float32", threads=1)
    return Student(backend, LoraConfig(batch_size=8, threads=1, learning_rate=2e-3, warmup=0, seed=0), arena_calls())


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_checkpoints_and_export_round_trip(student, tmp_path):
    examples = [e for e in generate(40, seed=11) if e.split != "held_out"][:8]
    batch = [student.encode_prompt(e.prompt(student.candidates), e.label) for e in examples]
    assert all(e.ids[: len(student.menu)] == student.menu for e in batch)  # the shared menu really is shared
    losses = [student.train_step(batch, 2e-3)[0] for _ in range(5)]
    assert losses[-1] < losses[0] - 0.3, losses

    student.save_checkpoint(tmp_path / "checkpoint", {"stage": "train-0", "stage_step": 5})
    before = student.predict(batch)
    weights = student.adapter_tensors()
    student.train_step(batch, 2e-3)  # move away, then restore
    state = student.load_checkpoint(tmp_path / "checkpoint")
    assert state["stage_step"] == 5 and student.step == 5
    assert all(torch.equal(weights[k], v) for k, v in student.adapter_tensors().items())
    assert student.predict(batch) == before

    out = student.export(tmp_path / "adapter", {"metrics": {"val_agreement": 0.5}})
    card = read_card(out)
    assert card.prompt == menu_prompt.FORMAT and card.info["metrics"] == {"val_agreement": 0.5}
    assert json.loads((out / "adapter_config.json").read_text())["r"] == student.config.rank
    assert sorted(p.name for p in out.iterdir()) == ["adapter.json", "adapter_config.json", "adapter_model.safetensors"]


def test_batches_cover_every_item_and_draw_with_replacement_when_short():
    rng = np.random.default_rng(0)
    it = batches(10, 5, rng)
    assert sorted(np.concatenate([next(it), next(it)]).tolist()) == list(range(10))
    assert len(next(batches(3, 8, rng))) == 8
    with pytest.raises(ValueError, match="no examples"):
        next(batches(0, 8, rng))


def test_training_tokens_are_the_tokens_the_planner_scores(student):
    """The backend tokenises the cached prefix and the rest apart: training must feed the same ids."""
    for e in generate(200, seed=5):
        prompt = e.prompt(student.candidates)
        ids = student.encode_prompt(prompt, e.label).ids
        assert ids == tuple(student.encode(prompt.text)) == tuple(student.encode(prompt.cache_prefix)) + tuple(
            student.encode(prompt.text[len(prompt.cache_prefix):]))
