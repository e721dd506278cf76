"""LoRA adapters merged at load: a tiny peft adapter on the embedded model, and the directories and settings refused."""

from __future__ import annotations

import json

import pytest
import torch

from flexrl.llm.adapters import CARD_FORMAT
from flexrl.llm.base import ModelLoadError
from flexrl.llm.config import LLMConfig
from flexrl.llm.transformers_backend import TransformersBackend

PROMPT = "Instruction: Avoid the ball!\nAnswer:"
OPTIONS = [" avoid(ball)", " go_to(red_pad)", " stop"]


def write_card(directory) -> None:
    (directory / "adapter.json").write_text(json.dumps({"format": CARD_FORMAT, "prompt": "short/1", "base_model": "x"}))


def peft_logprob(model, tokenizer, prompt: str, option: str) -> float:
    """An option's log-prob from one plain forward pass of ``model``."""
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    option_ids = tokenizer.encode(option, add_special_tokens=False)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt_ids + option_ids])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return sum(logprobs[len(prompt_ids) - 1 + j, token].item() for j, token in enumerate(option_ids))


@pytest.mark.slow
def test_an_adapter_is_merged_and_scores_as_the_peft_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    base = TransformersBackend(cpu_weights="float32")
    torch.manual_seed(0)
    peft_model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                                        init_lora_weights=False))
    peft_model.eval()
    peft_model.save_pretrained(tmp_path, safe_serialization=True)
    write_card(tmp_path)
    expected = [peft_logprob(peft_model, base.tokenizer, PROMPT, o) for o in OPTIONS]
    with peft_model.disable_adapter():
        untrained = [peft_logprob(peft_model, base.tokenizer, PROMPT, o) for o in OPTIONS]

    adapted = TransformersBackend(adapter=tmp_path)
    assert adapted.adapter_card is not None and adapted.adapter_card.prompt == "short/1"
    scores = [s.logprob for s in adapted.score_options(PROMPT, OPTIONS)]
    assert max(abs(s - u) for s, u in zip(scores, untrained)) > 0.5  # the adapter changes the scores
    assert scores == pytest.approx(expected, abs=0.05)  # float16 packing moves them a little


def test_a_pickled_adapter_is_refused_in_one_line(tmp_path):
    for name in ("adapter_config.json", "adapter_model.bin"):
        (tmp_path / name).write_text("{}")
    write_card(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        TransformersBackend(adapter=tmp_path, cache_dir=tmp_path / "never-loaded")
    message = str(info.value)
    assert "\n" not in message and "'adapter_model.bin'" in message
    assert not (tmp_path / "never-loaded").exists()  # refused before the model loads


def test_the_adapter_setting_is_checked_for_its_type_and_backend():
    LLMConfig(adapter="shipped").validate()
    with pytest.raises(ValueError, match="adapter") as info:
        LLMConfig(backend="llama_cpp", adapter="shipped").validate()
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="adapter"):
        LLMConfig(adapter=3).validate()
