"""TransformersBackend on the real embedded SmolLM2-135M-Instruct (loaded once per module)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import struct
from pathlib import Path

import pytest
import torch

from flexrl.llm.base import LLMBackend, LLMError, ModelLoadError
from flexrl.llm.embedded import EMBEDDED_INSTALL, embedded_gguf_path
from flexrl.llm.model_loading import HAS_FBGEMM, cache_entry, first_non_finite, gguf_non_finite
from flexrl.llm.tree_pass import chunked_linear
from flexrl.llm.transformers_backend import TransformersBackend

SYSTEM = (
    "You control a robot. Answer with one skill call.\n"
    "go_to(red_pad): walk to the red pad\n"
    "go_to(blue_pad): walk to the blue pad\n"
    "avoid(ball): move away from the ball\n"
    "move(north): walk one step north"
)
OPTIONS = [" go_to(red_pad)", " go_to(blue_pad)", " avoid(ball)", " move(north)", " x"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A copy of this machine's default model cache (built on the first load here if absent), so the module's
    loads start warm; the cold build from the GGUF is tested once, by the corrupted-cache test."""
    TransformersBackend()
    entry = cache_entry(embedded_gguf_path())
    copy = tmp_path_factory.mktemp("model-cache")
    shutil.copytree(entry, copy / entry.name)
    return copy


@pytest.fixture(scope="module")
def backend(cache_dir):
    return TransformersBackend(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def prompts(backend):
    prompt = backend.chat_prompt(SYSTEM, "Instruction: Avoid the ball!\nObservation: Ball: (20, 25)")
    prefix = prompt[: prompt.index("<|im_start|>user")]
    return prompt, prefix


def reference_logprob(backend, prompt: str, option: str) -> float:
    """Score with one plain forward pass over prompt + option, no cache or trie."""
    prompt_ids = backend.tokenizer.encode(prompt, add_special_tokens=False)
    option_ids = backend.tokenizer.encode(option, add_special_tokens=False)
    with torch.inference_mode():
        logits = backend.model(torch.tensor([prompt_ids + option_ids])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    start = len(prompt_ids) - 1
    return sum(logprobs[start + j, token].item() for j, token in enumerate(option_ids))


def test_implements_protocol(backend):
    assert isinstance(backend, LLMBackend)
    assert backend.name.endswith(".gguf")


def test_chat_prompt_ends_with_generation_prompt(backend, prompts):
    prompt, prefix = prompts
    assert prompt.startswith(prefix) and SYSTEM in prefix
    assert prompt.endswith("<|im_start|>assistant\n")


def test_cached_and_uncached_scores_match(backend, prompts):
    prompt, prefix = prompts
    backend.engine.clear_cache()
    uncached = backend.score_options(prompt, OPTIONS)
    assert backend.engine.cached_length(backend.encode(prompt)) == 0  # without a cache prefix nothing is kept
    filling = backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    cached = backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    assert backend.engine.cached_length(backend.encode(prompt)) == len(backend.encode(prefix))
    for scores in (filling, cached):
        for a, b in zip(scores, uncached, strict=True):
            assert a.n_tokens == b.n_tokens
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_scores_match_plain_forward(backend, prompts):
    prompt, prefix = prompts
    scores = backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    for option, score in zip(OPTIONS, scores, strict=True):
        assert score.logprob == pytest.approx(reference_logprob(backend, prompt, option), abs=1e-3)


def test_scores_are_deterministic_and_memo_is_not_mutated(backend, prompts):
    prompt, prefix = prompts
    first = backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    other = backend.chat_prompt(SYSTEM, "Instruction: Go north.\nObservation: Ball: (-3, 7)")
    backend.score_options(other, OPTIONS, cache_prefix=prefix)
    assert backend.score_options(prompt, OPTIONS, cache_prefix=prefix) == first


def trie_nodes(backend, options) -> int:
    """Option tokens a pass feeds: one per proper prefix the options' token ids have (their token trie)."""
    return len({tuple(ids[:end]) for ids in map(backend.encode, options) for end in range(1, len(ids))})


def test_a_new_prefix_runs_only_the_tokens_after_those_shared_with_a_kept_one(backend, prompts):
    prompt, prefix = prompts
    backend.engine.clear_cache()
    backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    other = backend.chat_prompt(SYSTEM, "Instruction: Go north.\nObservation: Ball: (-3, 7)")
    longer = other[: other.index("Observation:")]
    fed = backend.engine.fed_tokens
    cached = backend.score_options(other, OPTIONS, cache_prefix=longer)
    prompt_ids = backend.encode(longer) + backend.encode(other[len(longer) :])
    assert backend.engine.fed_tokens - fed == len(prompt_ids) - len(backend.encode(prefix)) + trie_nodes(backend, OPTIONS)
    # Then the longer prefix is kept: the same prompt feeds its rest and the trie only.
    fed = backend.engine.fed_tokens
    again = backend.score_options(other, OPTIONS, cache_prefix=longer)
    assert backend.engine.fed_tokens - fed == len(prompt_ids) - len(backend.encode(longer)) + trie_nodes(backend, OPTIONS)
    backend.engine.clear_cache()
    for a, b, c in zip(cached, again, backend.score_options(other, OPTIONS), strict=True):
        assert a.logprob == pytest.approx(c.logprob, abs=1e-4) and b.logprob == pytest.approx(c.logprob, abs=1e-4)


def test_prompt_equal_to_prefix(backend, prompts):
    _, prefix = prompts
    backend.engine.clear_cache()
    uncached = backend.score_options(prefix, [" a", " b c"])
    filling = backend.score_options(prefix, [" a", " b c"], cache_prefix=prefix)
    fed = backend.engine.fed_tokens
    cached = backend.score_options(prefix, [" a", " b c"], cache_prefix=prefix)
    assert backend.engine.fed_tokens - fed == 1  # the prompt's next-token log-probs are kept: only " b" is fed
    for scores in (filling, cached):
        assert [s.logprob for s in scores] == pytest.approx([s.logprob for s in uncached], abs=1e-4)


def test_n_tokens(backend):
    scores = backend.score_options("Hello", OPTIONS)
    expected = [len(backend.tokenizer.encode(o, add_special_tokens=False)) for o in OPTIONS]
    assert [s.n_tokens for s in scores] == expected
    assert scores[-1].n_tokens == 1
    assert backend.score_options("Hello", []) == []


def test_easy_choice(backend):
    prompt = backend.chat_prompt(
        "Answer with one word.", "Which of these is a fruit: hammer or apple?"
    )
    apple, hammer = backend.score_options(prompt, ["Apple", "Hammer"])
    assert apple.logprob > hammer.logprob


def test_invalid_inputs(backend):
    with pytest.raises(ValueError):
        backend.score_options("", [" a"])
    with pytest.raises(ValueError):
        backend.score_options("Hello", [""])


def test_generate(backend, prompts):
    text = backend.generate(prompts[0], max_new_tokens=8)
    assert isinstance(text, str) and text.strip()


def test_embedded_path_exists():
    path = embedded_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"


def test_missing_gguf_raises(tmp_path):
    missing = tmp_path / "absent.gguf"
    with pytest.raises(ModelLoadError) as info:
        TransformersBackend(model=str(missing), cache_dir=tmp_path / "cache")
    assert str(missing) in str(info.value)
    assert EMBEDDED_INSTALL in str(info.value)


def test_corrupt_gguf_raises(tmp_path):
    corrupt = tmp_path / "x.gguf"
    corrupt.write_bytes(b"this is not a gguf file" * 100)
    with pytest.raises(ModelLoadError, match="x.gguf"):
        TransformersBackend(model=str(corrupt), cache_dir=tmp_path / "cache")


def test_missing_model_directory_raises(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        TransformersBackend(model=str(tmp_path / "no-model"))


def test_a_load_from_a_warm_cache_reads_the_cache(backend, cache_dir):
    assert backend.from_cache
    assert TransformersBackend(cache_dir=cache_dir).from_cache


@pytest.mark.skipif(not HAS_FBGEMM, reason="fp16 weights need torch's fbgemm (x86)")
def test_fp16_weights_pack_the_body_and_keep_the_scores(backend, cache_dir, prompts):
    assert backend.weights == "float16 (fbgemm)"
    assert not any(isinstance(m, torch.nn.Linear) for m in backend.model.model.modules())
    exact = TransformersBackend(cache_dir=cache_dir, cpu_weights="float32")
    assert exact.weights == "float32"
    assert isinstance(exact.model.model.layers[0].mlp.down_proj, torch.nn.Linear)
    prompt, prefix = prompts
    packed = backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    for a, b in zip(packed, exact.score_options(prompt, OPTIONS, cache_prefix=prefix), strict=True):
        assert a.logprob != b.logprob and a.logprob == pytest.approx(b.logprob, abs=2e-2)


def test_bad_cpu_weights_raise(tmp_path):
    with pytest.raises(ValueError, match="cpu_weights"):
        TransformersBackend(cache_dir=tmp_path, cpu_weights="int4")


def test_chunked_lm_head_matches_linear():
    inputs, weight = torch.randn(7, 16), torch.randn(2500, 16)
    expected = torch.nn.functional.linear(inputs, weight)
    assert torch.allclose(chunked_linear(inputs, weight, chunk=1024), expected, atol=1e-5)


def test_tree_attention_matches_sdpa(backend, prompts):
    """The grouped-query attention of the tree pass agrees with transformers' own sdpa."""
    prompt, prefix = prompts
    scores = backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    backend.model.set_attn_implementation("sdpa")
    try:
        reference = backend.score_options(prompt, OPTIONS, cache_prefix=prefix)
    finally:
        backend.model.set_attn_implementation("flexrl_tree_sdpa")
    for a, b in zip(scores, reference, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


# ---------------------------------------------------------------------------------- non-finite weights
NAN_F32 = struct.pack("<f", float("nan"))


def poison_safetensors(file: Path, name: str) -> None:
    """Overwrite the first value of float32 tensor ``name`` with NaN, in place: the file keeps its size."""
    with open(file, "r+b") as f:
        header_size = struct.unpack("<Q", f.read(8))[0]
        entry = json.loads(f.read(header_size))[name]
        assert entry["dtype"] == "F32"
        f.seek(8 + header_size + entry["data_offsets"][0])
        f.write(NAN_F32)


def test_first_non_finite_names_the_weight():
    layer = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    assert first_non_finite(layer) is None
    for bad in (float("nan"), float("inf"), float("-inf")):
        with torch.no_grad():
            layer[1].bias[1] = bad
        assert first_non_finite(layer) == "1.bias"
    with torch.no_grad():
        layer[1].bias[1] = 3e38  # finite, however large
    assert first_non_finite(layer) is None


def test_a_model_directory_with_nan_weights_is_rejected_with_one_line(backend, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(backend.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    backend.tokenizer.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    size = weights.stat().st_size
    poison_safetensors(weights, "model.norm.weight")
    assert weights.stat().st_size == size
    with pytest.raises(ModelLoadError) as info:
        TransformersBackend(model=str(tmp_path))
    message = str(info.value)
    assert isinstance(info.value, LLMError) and "\n" not in message
    assert message.startswith(f"{weights}: weight model.norm.weight is not finite")


@pytest.mark.slow
def test_a_corrupted_cache_is_rebuilt_once_with_one_warning(cache_dir, tmp_path, caplog):
    (entry,) = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    copy = tmp_path / entry.name
    shutil.copytree(entry, copy)
    weights = copy / "model.safetensors"
    size = weights.stat().st_size
    poison_safetensors(weights, "model.norm.weight")
    assert weights.stat().st_size == size  # what a same-size corruption of the cache looks like
    with caplog.at_level(logging.WARNING, logger="flexrl.llm.model_loading"):
        rebuilt = TransformersBackend(cache_dir=tmp_path)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "\n" not in warning and f"{weights}: weight model.norm.weight is not finite" in warning
    assert f"rebuilding it from {embedded_gguf_path()}" in warning
    assert not rebuilt.from_cache
    scores = rebuilt.score_options("Hello", [" a", " b c"])
    assert all(math.isfinite(s.logprob) for s in scores)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flexrl.llm.model_loading"):
        warm = TransformersBackend(cache_dir=tmp_path)
    assert warm.from_cache  # the rebuilt cache is sound, and reading it beats the build from the GGUF
    assert warm.load_seconds < rebuilt.load_seconds
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging directory left


@pytest.mark.slow
def test_a_gguf_with_nan_weights_is_rejected_and_not_cached(tmp_path):
    import gguf

    source = tmp_path / "corrupt.gguf"
    shutil.copyfile(embedded_gguf_path(), source)
    tensor = next(t for t in gguf.GGUFReader(source).tensors if t.name == "blk.0.attn_norm.weight")
    assert tensor.tensor_type.name == "F32"
    with open(source, "r+b") as f:
        f.seek(tensor.data_offset)
        f.write(NAN_F32)
    with pytest.raises(ModelLoadError) as info:
        TransformersBackend(model=str(source), cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"GGUF model {source}: tensor blk.0.attn_norm.weight is not finite")
    assert not list(tmp_path.glob("cache/*"))  # nothing cached: the next load reads the GGUF again


def _write_gguf(path, tensors: dict) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_the_float_tensors_of_a_gguf_are_checked_before_dequantisation(tmp_path):
    import numpy as np

    sound = {"a.weight": np.ones(8, np.float32), "b.weight": np.full(8, -2.0, np.float16)}
    _write_gguf(tmp_path / "sound.gguf", sound)
    assert gguf_non_finite(tmp_path / "sound.gguf") is None
    _write_gguf(tmp_path / "inf.gguf", {**sound, "b.weight": np.array([1, 2, np.inf, 4], np.float16)})
    assert gguf_non_finite(tmp_path / "inf.gguf") == "b.weight"
    _write_gguf(tmp_path / "nan.gguf", {"a.weight": np.array([np.nan, 1.0], np.float32), "c.weight": np.zeros(2, np.float32)})
    assert gguf_non_finite(tmp_path / "nan.gguf") == "a.weight"
