"""The llama_cpp backend: a clear error without its extra; with llama-cpp-python installed, the real
embedded GGUF scores, chooses under a grammar and generates (skipped where the extra is absent: it
compiles llama.cpp for ~13 minutes, so CI's default install leaves it out)."""

import sys

import pytest

from flexrl.llm.base import ModelLoadError
from flexrl.llm.config import LLMConfig, build_backend

OPTIONS = [" avoid(ball)", " go_to(ball)", " follow(ball)", " stop"]


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(ModelLoadError, match=r"needs llama-cpp-python: pip install 'flexrl\[llamacpp\]'"):
        build_backend(LLMConfig(backend="llama_cpp"))


def test_bad_scoring_mode_is_one_line():
    from flexrl.llm.llama_cpp_backend import LlamaCppBackend

    with pytest.raises(ValueError, match="scoring='beam'; allowed: logprobs, grammar"):
        LlamaCppBackend(scoring="beam")


@pytest.fixture(scope="module")
def backend():
    pytest.importorskip("llama_cpp")
    from flexrl.llm.llama_cpp_backend import LlamaCppBackend

    return LlamaCppBackend()


@pytest.fixture(scope="module")
def prompt(backend):
    system = "Choose the one skill call that best follows the instruction.\nSkills: avoid(ball), go_to(ball), follow(ball), stop"
    return backend.chat_prompt(system, "Instruction: Avoid the ball!\nObservation: Agent: (0, 0), Ball: (5, 3)")


def test_scores_match_the_transformers_backend(backend, prompt):
    from flexrl.llm.transformers_backend import TransformersBackend

    ours = [s.logprob for s in backend.score_options(prompt, OPTIONS)]
    reference = [s.logprob for s in TransformersBackend(cpu_weights="float32").score_options(prompt, OPTIONS)]
    # llama.cpp runs the Q4_1 weights as they are; transformers runs them dequantised to float32
    assert ours == pytest.approx(reference, abs=0.5)
    assert max(range(4), key=ours.__getitem__) == max(range(4), key=reference.__getitem__)


def test_a_recurring_prefix_is_not_run_again(backend, prompt):
    backend.score_options(prompt, OPTIONS)
    before = backend.tokens_run
    other = prompt.replace("(5, 3)", "(-7, 2)")
    cut = prompt.index("Observation:")
    backend.score_options(other, OPTIONS, cache_prefix=prompt[:cut])
    assert backend.tokens_run - before < len(backend.encode(other)) // 2


def test_grammar_choice_and_generation(prompt):
    pytest.importorskip("llama_cpp")
    from flexrl.llm.llama_cpp_backend import LlamaCppBackend

    chooser = LlamaCppBackend(scoring="grammar")
    scores = [s.logprob for s in chooser.score_options(prompt, OPTIONS)]
    assert sorted(scores)[-1] == 0.0 and sum(s == 0.0 for s in scores) == 1  # exactly one option chosen
    assert isinstance(chooser.generate(prompt, 8), str)
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        chooser.generate(prompt, 0)
