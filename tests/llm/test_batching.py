"""BatchScorer and MicroBatcher on the real embedded model: same scores as TransformersBackend, fewer tokens fed."""

from __future__ import annotations

import threading

import pytest
import torch

from flexrl.llm.batch_types import ScoreRequest, SequenceGroup
from flexrl.llm.batching import BatchScorer
from flexrl.llm.micro_batcher import MicroBatcher

def reference_logprobs(backend, ids: list[int]) -> list[float]:
    """Per-token log-probs from one plain forward pass, no cache or tree."""
    with torch.inference_mode():
        logprobs = torch.log_softmax(backend.model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return [logprobs[j - 1, ids[j]].item() for j in range(1, len(ids))]


def assert_same_scores(got, expected, tol=2e-4):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert [s.n_tokens for s in g] == [s.n_tokens for s in e]
        assert [s.logprob for s in g] == pytest.approx([s.logprob for s in e], abs=tol)


def test_batched_scores_equal_score_options(local_backend, planner_requests):
    requests = planner_requests(range(4))
    # Also: no cache prefix, a prefix that does not match, and a short option set.
    requests += [ScoreRequest(requests[0].prompt, requests[0].options[:3]),
                 ScoreRequest(requests[1].prompt, (" x", " yes", " no"), "not the start"),
                 ScoreRequest(requests[2].prompt, ())]
    expected = [local_backend.score_options(r.prompt, list(r.options), r.cache_prefix) for r in requests]
    scorer = BatchScorer(local_backend)
    assert_same_scores(scorer.score_requests(requests), expected)
    # Again, now from the prefix cache: same scores, and only the option tries are fed (the cache keeps
    # each prompt's next-token log-probs, which predict the options' first tokens).
    fed = scorer.fed_tokens
    assert_same_scores(scorer.score_requests(requests), expected)
    trie_nodes = [{tuple(ids[:k]) for ids in map(local_backend.encode, r.options) for k in range(1, len(ids))}
                  for r in requests if r.options]
    assert scorer.fed_tokens - fed == sum(len(nodes) for nodes in trie_nodes)


def test_single_requests_and_a_batch_share_one_engine(local_backend, planner_requests):
    requests = planner_requests(range(30, 34))
    scorer = local_backend.batch_scorer(cache_tokens=8192)
    assert scorer.engine is local_backend.engine
    local_backend.engine.clear_cache()
    single = [local_backend.score_options(r.prompt, list(r.options), r.cache_prefix) for r in requests]
    batched = scorer.score_requests(requests)
    assert_same_scores(batched, single)
    # The batch kept every whole prompt, with its next-token log-probs: one by one, each request now
    # feeds its option trie only, and scores the same.
    fed = local_backend.engine.fed_tokens
    again = [local_backend.score_options(r.prompt, list(r.options), r.cache_prefix) for r in requests]
    trie_nodes = [{tuple(ids[:k]) for ids in map(local_backend.encode, r.options) for k in range(1, len(ids))}
                  for r in requests]
    assert local_backend.engine.fed_tokens - fed == sum(len(nodes) for nodes in trie_nodes)
    assert_same_scores(again, single)
    local_backend.engine.clear_cache()


def test_shared_prefix_is_computed_once_per_batch(local_backend, planner_requests):
    requests = planner_requests(range(10, 14), instructions=("Avoid the ball!",))
    prompts = [local_backend.encode(r.prompt) for r in requests]
    shared = min(_common_prefix(prompts[0], p) for p in prompts[1:])
    # Tokens each request feeds alone: its prompt, then one per option-trie node.
    alone, expected = 0, []
    for r in requests:
        lone = BatchScorer(local_backend)
        expected += lone.score_requests([r])
        alone += lone.fed_tokens
    scorer = BatchScorer(local_backend)
    scores = scorer.score_requests(requests)
    # The shared system text and instruction are fed once, not once per request (plus a token per row).
    assert shared > 150
    assert scorer.fed_tokens <= alone - (len(requests) - 1) * shared + 2 * len(requests)
    assert_same_scores(scores, expected)


def _common_prefix(a, b) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_every_position_matches_a_plain_forward_pass(local_backend):
    scorer = BatchScorer(local_backend, prompt_logprobs=True, cache_tokens=2048)
    base = local_backend.encode("The robot walks to the red pad and then")
    sequences = [base + local_backend.encode(t) for t in (" stops.", " turns left", " waits")]
    for _ in range(2):  # uncached, then from the prefix cache
        results = scorer.score_groups([SequenceGroup.sharing(sequences, all_positions=True, top_k=3)])[0]
        for seq, res in zip(sequences, results, strict=True):
            assert res.logprobs[0] is None and res.top[0] == []
            assert res.logprobs[1:] == pytest.approx(reference_logprobs(local_backend, seq), abs=2e-4)
            assert all(len(t) == 3 and t[0][1] >= t[1][1] >= t[2][1] for t in res.top[1:])
            assert all(lp <= t[0][1] + 1e-5 for lp, t in zip(res.logprobs[1:], res.top[1:]))


def test_only_continuations_without_all_positions(local_backend):
    ids = local_backend.encode("Hello there, general")
    group = SequenceGroup((tuple(ids),), len(ids) - 1)
    (res,) = BatchScorer(local_backend).score_groups([group])[0]
    assert res.logprobs[:-1] == [None] * (len(ids) - 1)
    assert res.logprobs[-1] == pytest.approx(reference_logprobs(local_backend, ids)[-1], abs=2e-4)
    with pytest.raises(ValueError, match="prompt_logprobs"):
        BatchScorer(local_backend).score_groups([SequenceGroup((tuple(ids),), 1, all_positions=True)])


def test_bad_requests_raise(local_backend):
    scorer = BatchScorer(local_backend)
    with pytest.raises(ValueError, match="at least one token"):
        scorer.score_requests([ScoreRequest("prompt", ("",))])
    with pytest.raises(ValueError, match="empty"):
        scorer.score_requests([ScoreRequest("", (" a",))])
    with pytest.raises(ValueError, match="prompt_len"):
        SequenceGroup(((1, 2),), 2)
    with pytest.raises(ValueError, match="top_k"):
        SequenceGroup(((1, 2),), 1, top_k=6)


def test_batched_generation_equals_generate(local_backend):
    prompts = [local_backend.chat_prompt("You are brief.", q) for q in ("Name a colour.", "What is two plus two? Explain.")]
    scorer = BatchScorer(local_backend)
    outputs = scorer.generate([local_backend.encode(p) for p in prompts], [8, 12], top_k=2)
    for prompt, out, limit in zip(prompts, outputs, (8, 12), strict=True):
        assert local_backend.tokenizer.decode(out.tokens, skip_special_tokens=True) == local_backend.generate(prompt, limit)
        assert len(out.tokens) <= limit and len(out.logprobs) == len(out.tokens) == len(out.top)
        assert all(t[0][0] == token for t, token in zip(out.top, out.tokens))  # greedy: the top token


def test_micro_batcher_shares_passes_and_isolates_a_bad_job(local_backend, planner_requests):
    requests = planner_requests(range(20, 24))
    scorer = BatchScorer(local_backend)
    groups = []
    for r in requests:
        prompt = local_backend.encode(r.cache_prefix) + local_backend.encode(r.prompt[len(r.cache_prefix):])
        groups.append(SequenceGroup(tuple(tuple(prompt + local_backend.encode(o)) for o in r.options), len(prompt)))
    bad = SequenceGroup(groups[0].sequences, groups[0].prompt_len, all_positions=True)  # scorer lacks prompt_logprobs
    batcher = MicroBatcher(scorer, max_batch=8, wait_s=0.05)
    jobs = [*groups, bad]
    futures = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def submit(i):
        barrier.wait()
        futures[i] = batcher.score(jobs[i])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    error = futures[-1].exception(timeout=120)
    assert error is not None and "prompt_logprobs" in str(error)
    expected = [local_backend.score_options(r.prompt, list(r.options), r.cache_prefix) for r in requests]
    for group, future, exp in zip(groups, futures, expected):
        got = [sum(res.logprobs[group.prompt_len:]) for res in future.result(timeout=120)]
        assert got == pytest.approx([s.logprob for s in exp], abs=2e-4)
    assert batcher.jobs == len(jobs) and batcher.batches < len(jobs)
    batcher.close()
