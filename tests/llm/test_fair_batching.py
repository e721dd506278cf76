"""MicroBatcher slicing on the real embedded model: a big job runs in slices between small ones, with the same
results as in one go (chunked prefill through the prefix cache; generation resumed from its own key/value cache)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from flexrl.llm.batch_types import SequenceGroup
from flexrl.llm.batching import BatchScorer
from flexrl.llm.generation import GenerationRun
from flexrl.llm.micro_batcher import MicroBatcher

pytestmark = pytest.mark.slow
LONG = " ".join(f"Robot {i} walks to the red pad, waits, and turns left." for i in range(30))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_long_echo_in_slices_equals_one_pass_and_a_small_job_overtakes_it(local_backend):
    ids = local_backend.encode(LONG)
    group = SequenceGroup.sharing([ids], all_positions=True, top_k=2)
    (whole,) = BatchScorer(local_backend, prompt_logprobs=True).score_groups([group])[0]
    batcher = MicroBatcher(BatchScorer(local_backend, prompt_logprobs=True), slice_tokens=64)
    finished = []
    try:
        big = batcher.score(group)
        big.add_done_callback(lambda _: finished.append("big"))
        time.sleep(0.05)
        small = batcher.score(SequenceGroup.sharing([local_backend.encode("Hello there, robot")], all_positions=True))
        small.add_done_callback(lambda _: finished.append("small"))
        (sliced,) = big.result(timeout=600)
        small.result(timeout=600)
    finally:
        batcher.close()
    assert len(ids) > 4 * 64 and batcher.batches >= len(ids) // 64  # the big job took several micro-batches
    assert finished == ["small", "big"]
    assert sliced.logprobs[0] is None and sliced.logprobs[1:] == pytest.approx(whole.logprobs[1:], abs=2e-4)
    assert [[t for t, _ in top] for top in sliced.top[1:]] == [[t for t, _ in top] for top in whole.top[1:]]


def test_options_split_over_slices_score_as_in_one_go(local_backend, planner_requests):
    (request,) = planner_requests([5])
    prompt = local_backend.encode(request.cache_prefix) + local_backend.encode(request.prompt[len(request.cache_prefix):])
    group = SequenceGroup(tuple(tuple(prompt + local_backend.encode(o)) for o in request.options), len(prompt))
    expected = local_backend.score_options(request.prompt, list(request.options), request.cache_prefix)
    batcher = MicroBatcher(BatchScorer(local_backend), slice_tokens=48)
    try:
        results = batcher.score(group).result(timeout=600)
    finally:
        batcher.close()
    assert batcher.batches > len(prompt) // 48  # prompt chunks, then the options in several pieces
    got = [sum(r.logprobs[len(prompt):]) for r in results]
    assert got == pytest.approx([s.logprob for s in expected], abs=2e-4)


def test_generation_in_slices_equals_one_call(local_backend):
    prompts = [local_backend.chat_prompt("You are brief.", q) for q in ("Name a colour.", "What is two plus two? Explain.")]
    run = GenerationRun(BatchScorer(local_backend), [local_backend.encode(p) for p in prompts], [8, 12], top_k=2)
    slices = 0
    while not run.done:
        run.advance(prefill_tokens=16, steps=3)
        slices += 1
    assert slices >= 5  # prompts read 8 columns at a time, then 3 tokens per slice (12 for the longer)
    for prompt, out, limit in zip(prompts, run.results(), (8, 12), strict=True):
        assert local_backend.tokenizer.decode(out.tokens, skip_special_tokens=True) == local_backend.generate(prompt, limit)
        assert all(top[0][0] == token for top, token in zip(out.top, out.tokens))


def test_generate_jobs_stream_slices_and_stop_when_told(local_backend):
    batcher = MicroBatcher(BatchScorer(local_backend), slice_tokens=64, decode_steps=4)
    prompt = local_backend.encode(local_backend.chat_prompt("You are brief.", "Tell me a long story."))
    heard: dict[int, list[int]] = {0: [], 1: []}
    lock = threading.Lock()

    def on_tokens(index, delta):
        with lock:
            heard[index] += delta.tokens
            return not (index == 1 and len(heard[1]) >= 6)  # stop the second prompt after six tokens

    try:
        outs = batcher.generate([prompt, prompt], 20, on_tokens=on_tokens).result(timeout=600)
    finally:
        batcher.close()
    assert heard[0] == outs[0].tokens and len(outs[0].tokens) == 20
    assert heard[1] == outs[1].tokens == outs[0].tokens[:8]  # stopped at the end of the slice that reached six
