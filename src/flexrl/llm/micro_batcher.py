"""Fair scheduling of score and generate jobs from many threads onto one :class:`BatchScorer`.

The :class:`MicroBatcher` moves every job on a slice at a time (a long prompt is
read in chunks through the prefix cache; a :class:`GenerationRun` keeps its own
key/value cache between slices), so a big request does not hold the model while
small ones wait.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Sequence

from flexrl.llm.batch_types import MAX_TOP_K, Generation, OnTokens, SequenceGroup, TokenLogprobs
from flexrl.llm.batching import BatchScorer
from flexrl.llm.generation import GenerationRun

logger = logging.getLogger(__name__)


@dataclass
class _ScoreTask:
    """A queued :class:`SequenceGroup`; a big one is scored in pieces over several micro-batches."""

    group: SequenceGroup
    future: Future
    results: list[TokenLogprobs | None] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    warmed: int = 0  # prompt tokens read by warm-up pieces so far

    def __post_init__(self) -> None:
        self.results = [None] * len(self.group.sequences)
        self.pending = list(range(len(self.group.sequences)))

    def futures(self) -> list[Future]:
        return [self.future]

    def piece(self, scorer: BatchScorer, budget: int | None) -> tuple[SequenceGroup, list[int]]:
        """The part to score now, feeding about ``budget`` new tokens at most, and the sequences it answers.

        The leading pending sequences that fit go together. A prompt longer than the budget is read in
        chunks first (each chunk's keys and values land in the prefix cache and the next chunk reuses
        them); those warm-up pieces answer no sequence. One sequence's continuation is never split.
        """
        g = self.group
        cost = g.prompt_len - scorer.cached_length(g.sequences[self.pending[0]][: g.prompt_len])
        taken: list[int] = []
        for i in self.pending:
            extra = len(g.sequences[i]) - g.prompt_len
            if budget is not None and taken and cost + extra > budget:
                break
            taken.append(i)
            cost += extra
        prompt_len = g.prompt_len
        if budget is not None and cost > budget:
            if len(taken) == 1 and g.all_positions:  # an echoed sequence is all prompt: read it in chunks
                prompt_len = len(g.sequences[taken[0]]) - 1
            prompt = g.sequences[taken[0]][:prompt_len]
            cached = scorer.cached_length(prompt)
            # Warm up the next chunk, unless other requests pushed the last one out of the cache
            # (then the rest goes in one piece, so that the task always finishes).
            if prompt_len - cached > budget and cached >= self.warmed:
                self.warmed = end = cached + budget
                return SequenceGroup((prompt[: end + 1],), end), []
        self.warmed = 0
        return SequenceGroup(tuple(g.sequences[i] for i in taken), prompt_len, g.all_positions, g.top_k), taken

    def accept(self, taken: list[int], results: list[TokenLogprobs]) -> bool:
        """Keep a piece's results; True (and the future set) once every sequence has them."""
        for i, result in zip(taken, results):
            self.results[i] = result
        done = set(taken)
        self.pending = [i for i in self.pending if i not in done]
        if not self.pending:
            self.future.set_result(self.results)
        return not self.pending


@dataclass
class _GenerateTask:
    """Queued prompts to continue; ``on_tokens`` hears each slice."""

    prompts: list[tuple[int, ...]]
    max_new_tokens: int
    top_k: int
    on_tokens: OnTokens | None
    future: Future
    alone: bool = False  # run in a batch of its own (after a shared batch failed)

    @property
    def width(self) -> int:
        """Prompt tokens a batch of these prompts reads (left-padded to the longest)."""
        return len(self.prompts) * max(len(p) for p in self.prompts)

    def futures(self) -> list[Future]:
        return [self.future]


class _Run:
    """A :class:`GenerationRun` over the prompts of one or more generate tasks."""

    def __init__(self, scorer: BatchScorer, tasks: list[_GenerateTask]) -> None:
        self.tasks = tasks
        self.owners = [(task, j) for task in tasks for j in range(len(task.prompts))]
        self.run = GenerationRun(scorer, [p for task in tasks for p in task.prompts],
                                 [task.max_new_tokens for task, _ in self.owners], max(t.top_k for t in tasks))
        self.started = False  # whether any tokens went out (a failed run can then no longer be retried)

    def advance(self, prefill_tokens: int | None, steps: int | None) -> None:
        """One slice; tells each task's ``on_tokens``, drops the prompts it stops, and sets the futures when done."""
        deltas = self.run.advance(prefill_tokens, steps)
        self.started = self.started or bool(deltas)
        stop = [i for i, delta in deltas.items() if not self._tell(i, delta)]
        self.run.drop(stop)
        if self.run.done:
            results = self.run.results()
            for task in self.tasks:
                task.future.set_result([_top(results[i], task.top_k) for i, (t, _) in enumerate(self.owners) if t is task])

    def _tell(self, i: int, delta: Generation) -> bool:
        task, j = self.owners[i]
        if task.on_tokens is None:
            return True
        try:
            return bool(task.on_tokens(j, _top(delta, task.top_k)))
        except Exception:  # noqa: BLE001  (a broken listener stops its own prompt, not the batch)
            logger.exception("on_tokens failed; generation of that prompt stopped")
            return False

    def fail(self, err: BaseException) -> None:
        for task in self.tasks:
            task.future.set_exception(err)

    def futures(self) -> list[Future]:
        return [task.future for task in self.tasks]


def _top(generation: Generation, k: int) -> Generation:
    """``generation`` with at most ``k`` alternatives per token (tasks of one run may ask for fewer)."""
    return Generation(generation.tokens, generation.logprobs, [t[:k] for t in generation.top], generation.stopped)


class MicroBatcher:
    """Runs score and generate jobs from many threads on one worker thread, in fair micro-batches.

    Each micro-batch takes up to ``max_batch`` jobs in turn, jobs in progress first
    in the order they arrived, and moves each job on by one slice: a score job by
    a piece that feeds at most ``slice_tokens`` new tokens (a longer prompt is read
    in chunks through the prefix cache), a generate job by a prefill chunk of at
    most ``slice_tokens`` tokens or ``decode_steps`` generated tokens. A job that
    is not done goes to the back of the line. A big request therefore holds the
    model for one slice at a time, and small requests that arrive meanwhile run
    in the next micro-batch instead of waiting for all of it.

    All score pieces of a micro-batch share passes; new generate jobs whose
    prompts fit one slice start together in one batch. If a batch of score pieces
    fails, its pieces are retried one by one, so a bad request fails alone.

    Args:
        scorer: the model, used only from the worker thread.
        max_batch: most jobs per micro-batch.
        wait_s: how long an idle worker waits for more jobs before running a batch.
        slice_tokens: most new tokens one job feeds per micro-batch (None: no slicing).
        decode_steps: most tokens one generate job makes per micro-batch (None: no slicing).

    Attributes:
        batches: micro-batches run so far.
        jobs: jobs started so far.
    """

    def __init__(self, scorer: BatchScorer, max_batch: int = 32, wait_s: float = 0.005,
                 slice_tokens: int | None = 512, decode_steps: int | None = 16) -> None:
        self.scorer, self.max_batch, self.wait_s = scorer, max_batch, wait_s
        self.slice_tokens, self.decode_steps = slice_tokens, decode_steps
        self.batches = self.jobs = 0
        self._queue: queue.Queue = queue.Queue()
        self._line: deque = deque()  # jobs in progress, in turn
        self._worker = threading.Thread(target=self._loop, name="flexrl-microbatcher", daemon=True)
        self._worker.start()

    def score(self, group: SequenceGroup) -> Future:
        """Queue a group; the future gives its ``list[TokenLogprobs]``."""
        future: Future = Future()
        self._queue.put(_ScoreTask(group, future))
        return future

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, top_k: int = 0,
                 on_tokens: OnTokens | None = None) -> Future:
        """Queue greedy continuations of ``prompts``; the future gives their :class:`Generation` list.

        Args:
            prompts: token ids of each prompt (one job: they advance together).
            max_new_tokens: token limit of each continuation.
            top_k: most likely alternatives returned per generated token.
            on_tokens: called on the worker thread after each slice (for streaming); keep it quick.
        """
        if not 0 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k={top_k}; allowed: 0 to {MAX_TOP_K}")
        if not prompts or any(not p for p in prompts):
            raise ValueError("generate needs at least one prompt, each of at least one token")
        future: Future = Future()
        self._queue.put(_GenerateTask([tuple(p) for p in prompts], max_new_tokens, top_k, on_tokens, future))
        return future

    def close(self) -> None:
        """Stop the worker after the queued jobs."""
        self._queue.put(None)
        self._worker.join()

    def _loop(self) -> None:
        closing = False
        while not (closing and not self._line and self._queue.empty()):
            closing = self._take(block=not self._line and not closing) or closing
            batch = [self._line.popleft() for _ in range(min(self.max_batch, len(self._line)))]
            if not batch:
                continue
            self.batches += 1
            try:
                self._line.extend(self._run(batch))
            except Exception as err:  # noqa: BLE001  (a bug here must not leave submitters waiting forever)
                logger.exception("micro-batch failed")
                for job in batch:
                    for future in job.futures():
                        if not future.done():
                            future.set_exception(err)

    def _take(self, block: bool) -> bool:
        """Move queued jobs to the line (an idle worker waits for one, then ``wait_s`` for more); True on close."""
        taken = 0
        while True:
            try:
                if block and not taken:
                    item = self._queue.get()
                elif block and self.wait_s and taken < self.max_batch:
                    item = self._queue.get(timeout=self.wait_s)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            if item.future.set_running_or_notify_cancel():
                self.jobs += 1
                self._line.append(item)
                taken += 1

    def _run(self, batch: list) -> list:
        """Move every job of ``batch`` on by one slice; returns those not done."""
        unfinished = self._score([job for job in batch if isinstance(job, _ScoreTask)])
        runs = [job for job in batch if isinstance(job, _Run)]
        runs += self._start([job for job in batch if isinstance(job, _GenerateTask)])
        for run in runs:
            try:
                run.advance(self.slice_tokens, self.decode_steps)
            except Exception as err:  # noqa: BLE001  (the run's submitters get the error)
                if run.started or len(run.tasks) == 1:
                    run.fail(err)
                else:  # nothing streamed yet: retry the tasks one by one, so only a bad one fails
                    for task in run.tasks:
                        task.alone = True
                    unfinished += run.tasks
                continue
            if not run.run.done:
                unfinished.append(run)
        return unfinished

    def _score(self, tasks: list[_ScoreTask]) -> list[_ScoreTask]:
        """Score one piece of every task in shared passes; returns the tasks with pieces left."""
        pieces = []
        for task in tasks:
            try:
                pieces.append((task, *task.piece(self.scorer, self.slice_tokens)))
            except Exception as err:  # noqa: BLE001  (its submitter gets the error)
                task.future.set_exception(err)
        try:
            results = self.scorer.score_groups([group for _, group, _ in pieces])
        except Exception:  # noqa: BLE001  (score the pieces one by one so only a bad one fails)
            results = []
            for task, group, _ in pieces:
                try:
                    results.append(self.scorer.score_groups([group])[0])
                except Exception as err:  # noqa: BLE001  (its submitter gets the error)
                    task.future.set_exception(err)
                    results.append(None)
        return [task for (task, _, taken), result in zip(pieces, results)
                if result is not None and not task.accept(taken, result)]

    def _start(self, tasks: list[_GenerateTask]) -> list[_Run]:
        """Group new generate tasks into runs: those that fit one prefill slice together, bigger ones alone."""
        groups: list[list[_GenerateTask]] = []
        shared: list[_GenerateTask] = []
        rows = 0
        for task in sorted(tasks, key=lambda t: max(map(len, t.prompts))):
            if task.alone or (self.slice_tokens is not None and task.width > self.slice_tokens):
                groups.append([task])
                continue
            longest = max(map(len, task.prompts))
            if shared and self.slice_tokens is not None and (rows + len(task.prompts)) * longest > self.slice_tokens:
                groups.append(shared)
                shared, rows = [], 0
            shared.append(task)
            rows += len(task.prompts)
        if shared:
            groups.append(shared)
        runs = []
        for group in groups:
            try:
                runs.append(_Run(self.scorer, group))
            except Exception as err:  # noqa: BLE001  (its submitters get the error)
                for task in group:
                    task.future.set_exception(err)
        return runs
