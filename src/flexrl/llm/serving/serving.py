"""The logic of ``flexrl serve``'s endpoints over an :class:`~flexrl.llm.serving.engine.Engine`.

Each request is checked against the server's limits (prompts per request, tokens per prompt,
generated tokens, tokens per request, the model's context) before any model work, and a broken
limit is a 400 naming it, its value and the flag that raises it. Decoding is greedy. A
``structured_outputs.choice`` answer is the choice with the highest total log-likelihood. With
``stream: true`` the answer comes as server-sent events in the OpenAI chunk format, one chunk per
generated slice, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

from pydantic import BaseModel

from flexrl.llm.batch_types import Generation, SequenceGroup, TokenLogprobs
from flexrl.llm.serving.config import ServeConfig, flag
from flexrl.llm.serving.engine import Engine
from flexrl.llm.serving.protocol import (
    AssistantMessage, ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatLogprobs,
    ChatStreamChoice, ChatTokenLogprob, CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse,
    DeltaMessage, ErrorResponse, ModelCard, ModelList, RequestError, StructuredOutputs, TopLogprob, Usage,
)

logger = logging.getLogger(__name__)

Choices = tuple[list[str], list[list[int]]]
"""Structured-output choices: their texts and their token ids."""
COMPLETION_MAX_TOKENS = 16
"""``max_tokens`` of a completion that does not set it (the OpenAI default; at most the server's ``max_new_tokens``)."""
UNLIKELY_LOGPROB = -9999.0
"""What a log-prob of -inf is sent as: OpenAI's documented value for a very unlikely token, and vLLM's floor."""
_CHARS_PER_TOKEN = 32  # no tokenizer reaches this many characters a token: longer texts are refused untokenised


@dataclass(frozen=True)
class Token:
    """One output token: its text, log-prob (None for the first prompt token) and top alternatives."""

    piece: str
    logprob: float | None
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Event:
    """New output for the prompt at ``index``: text, the tokens it came from, and the finish reason once done."""

    index: int
    text: str
    tokens: list[Token]
    finish: str | None


class TextStream:
    """Turns one prompt's generated tokens into text deltas, cut at the first stop string.

    Text that could still turn into a stop string, or that ends inside a character
    (a byte-level token splits some characters), is held back until it cannot.

    Args:
        engine: for decoding.
        index: the prompt's index (the choice index of its events).
        stops: stop strings; the text ends before the first one found.
        limit: the most tokens the model generates for this prompt.
    """

    def __init__(self, engine: Engine, index: int, stops: Sequence[str], limit: int) -> None:
        self._engine, self.index, self._stops, self._limit = engine, index, list(stops), limit
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._ids: list[int] = []
        self._tokens: list[Token] = []
        self._ends: list[int] = []  # text length after each token's piece
        self._sent_chars = self._sent_tokens = 0

    def push(self, delta: Generation) -> Event | None:
        """Add a slice of generated tokens; returns what can go out now (None: nothing yet)."""
        piece = self._engine.piece
        for token, logprob, top in zip(delta.tokens, delta.logprobs, delta.top):
            self._ids.append(token)
            self._tokens.append(Token(piece(token), logprob, [(piece(t), v) for t, v in top]))
            self._ends.append((self._ends[-1] if self._ends else 0) + len(self._tokens[-1].piece))
        text = self._engine.decode(self._ids)
        cuts = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        finish, n = None, len(self._tokens)
        if cuts:
            text, finish = text[: max(min(cuts), self._sent_chars)], "stop"
            n = bisect_left(self._ends, len(text)) + 1 if text else 0
        elif delta.stopped or len(self._ids) >= self._limit:
            finish = "stop" if delta.stopped else "length"
        else:
            safe = max(len(text) - self._hold, self._sent_chars)
            while safe > self._sent_chars and text[safe - 1] == "\ufffd":
                safe -= 1
            text, n = text[:safe], bisect_right(self._ends, safe)
        n = max(min(n, len(self._tokens)), self._sent_tokens)
        event = Event(self.index, text[self._sent_chars :], self._tokens[self._sent_tokens : n], finish)
        self._sent_chars, self._sent_tokens = len(text), n
        return event if event.text or event.tokens or finish else None


class OpenAIServing:
    """The endpoints' logic: checks and limits, then the model calls through ``engine``.

    Args:
        engine: the model.
        config: the server's limits.
    """

    def __init__(self, engine: Engine, config: ServeConfig) -> None:
        self.engine, self.config = engine, config

    # ------------------------------------------------------------------------------ checks
    def _within(self, limit: str, value: int, what: str, param: str | None) -> None:
        """Refuse a request whose ``value`` is over the setting ``limit``; ``what`` says what was counted."""
        allowed = getattr(self.config, limit)
        if value > allowed:
            raise RequestError(f"{what}; this server allows at most {limit}={allowed} "
                               f"(raise it with flexrl serve {flag(limit)})", param=param)

    def _check_model(self, name: str) -> None:
        if name != self.engine.name:
            raise RequestError(f"model {name!r} not found; this server serves {self.engine.name!r}", 404, "model")

    def _encode(self, text: str, what: str, param: str) -> tuple[list[int], list[int]]:
        self._within("max_prompt_tokens", len(text) // _CHARS_PER_TOKEN, f"{what} has {len(text)} characters "
                     f"(over {_CHARS_PER_TOKEN} a token)", param)
        ids, offsets = self.engine.encode(text)
        if not ids:
            raise RequestError(f"{what} must not be empty", param=param)
        self._within("max_prompt_tokens", len(ids), f"{what} has {len(ids)} tokens", param)
        return ids, offsets

    def _choices(self, spec: StructuredOutputs | None) -> Choices | None:
        if spec is None:
            return None
        self._within("max_prompts", len(spec.choice), f"'structured_outputs.choice' has {len(spec.choice)} entries",
                     "structured_outputs")
        options = [self._encode(c, f"choice {i}", "structured_outputs")[0] for i, c in enumerate(spec.choice)]
        return spec.choice, options

    def _check_work(self, prompts: list[list[int]], max_tokens: int, choices: Choices | None, param: str) -> None:
        """The request's tokens (prompts, plus what is generated or scored after each) against the limits."""
        prompt_tokens = sum(map(len, prompts))
        after = sum(map(len, choices[1])) if choices else max_tokens
        needed = prompt_tokens + after * len(prompts)
        self._within("max_request_tokens", needed, f"this request needs {needed} tokens ({prompt_tokens} in prompts, "
                     f"{after * len(prompts)} {'in choices' if choices else 'to generate'})", param)
        longest, extra = max(map(len, prompts)), max(map(len, choices[1])) if choices else max_tokens
        if longest + extra > self.engine.context_tokens:
            raise RequestError(f"prompt ({longest} tokens) plus {'a choice' if choices else 'max_tokens'} ({extra}) "
                               f"exceeds the model's context of {self.engine.context_tokens} tokens", param=param)

    # ------------------------------------------------------------------------------ tokenising (on a worker thread)
    # A body may hold a megabyte of text: tokenising it, or rendering a chat, on the event loop would stall
    # every other request and stream, so the endpoints run these through asyncio.to_thread.
    def _tokenise_completion(self, request: CompletionRequest) -> tuple[Choices | None, list[tuple[list[int], list[int]]]]:
        """The request's structured-output choices and its prompts' token ids and offsets, checked."""
        texts = request.prompt
        choices = self._choices(request.structured_outputs)
        return choices, [self._encode(t, "prompt" if len(texts) == 1 else f"prompt {i}", "prompt") for i, t in enumerate(texts)]

    def _tokenise_chat(self, request: ChatCompletionRequest) -> tuple[Choices | None, list[int]]:
        """The request's structured-output choices and its rendered chat's token ids, checked."""
        choices = self._choices(request.structured_outputs)
        rendered = self.engine.render_chat([{"role": m.role, "content": m.content} for m in request.messages])
        return choices, self._encode(rendered, "the rendered chat", "messages")[0]

    # ------------------------------------------------------------------------------ model calls
    async def _choose(self, ids: list[int], choices: Choices) -> str:
        group = SequenceGroup(tuple(tuple(ids + o) for o in choices[1]), len(ids))
        results = await asyncio.wrap_future(self.engine.score(group))
        totals = [math.fsum(r.logprobs[len(ids) :]) for r in results]
        return choices[0][max(range(len(totals)), key=totals.__getitem__)]

    async def _generate(self, prompts: list[list[int]], max_tokens: int, top_k: int, stops: list[str]) -> AsyncIterator[Event]:
        """Greedy continuations of ``prompts`` (one job), as events while the model makes them."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        streams = [TextStream(self.engine, i, stops, max_tokens) for i in range(len(prompts))]
        listening = [True]

        def post(item) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the event loop closed: nobody listens any more
                listening[0] = False

        def on_tokens(index: int, delta: Generation) -> bool:  # on the batcher's thread
            event = streams[index].push(delta) if listening[0] else None
            if event is not None:
                post(event)
            return listening[0] and (event is None or event.finish is None)

        future = self.engine.generate(prompts, max_tokens, top_k, on_tokens)
        future.add_done_callback(lambda _: post(None))
        try:
            while (event := await events.get()) is not None:
                yield event
            future.result()
        finally:
            listening[0] = False  # a client that went away stops its generation at the next slice

    async def _outputs(self, prompts: list[list[int]], max_tokens: int, top_k: int, stops: list[str],
                       choices: Choices | None) -> AsyncIterator[Event]:
        """What follows each prompt: the best choice, nothing (``max_tokens`` 0), or generated text."""
        if choices is not None:
            for i, ids in enumerate(prompts):  # one at a time: a request holds one place in the batcher's line
                yield Event(i, await self._choose(ids, choices), [], "stop")
        elif max_tokens == 0:
            for i in range(len(prompts)):
                yield Event(i, "", [], "length")
        else:
            async for event in self._generate(prompts, max_tokens, top_k, stops):
                yield event

    # ------------------------------------------------------------------------------ completions
    async def completions(self, request: CompletionRequest) -> CompletionResponse | AsyncIterator[str]:
        """``/v1/completions``: the response, or its server-sent events with ``stream``.

        Raises:
            RequestError: the request breaks a limit or names another model.
        """
        self._check_model(request.model)
        texts = request.prompt
        self._within("max_prompts", len(texts), f"'prompt' has {len(texts)} entries", "prompt")
        max_tokens = min(COMPLETION_MAX_TOKENS, self.config.max_new_tokens) if request.max_tokens is None else request.max_tokens
        self._within("max_new_tokens", max_tokens, f"max_tokens is {max_tokens}", "max_tokens")
        choices, encoded = await asyncio.to_thread(self._tokenise_completion, request)
        prompts = [ids for ids, _ in encoded]
        self._check_work(prompts, max_tokens, choices, "prompt")
        top_k = request.logprobs
        outputs = self._outputs(prompts, max_tokens, top_k or 0, request.stops, choices)
        score_prompts = request.echo and top_k is not None
        if request.stream:
            return self._completion_stream(request, encoded, outputs, score_prompts)
        echoing = asyncio.ensure_future(self._echo(prompts, top_k)) if score_prompts else None
        try:
            events = [event async for event in outputs]
            echoed = await echoing if echoing is not None else None
        finally:
            if echoing is not None:
                echoing.cancel()
        out, tokens = [], []
        for i, text in enumerate(texts):
            mine = [e for e in events if e.index == i]
            tokens.append([t for e in mine for t in e.tokens])
            choice = CompletionChoice(index=i, text=text if request.echo else "", finish_reason=mine[-1].finish)
            if top_k is not None:
                choice.logprobs = CompletionLogprobs()
                if echoed is not None:
                    _add_completion_logprobs(choice.logprobs, echoed[i], encoded[i][1], top_k)
                _add_completion_logprobs(choice.logprobs, tokens[i], _offsets(tokens[i], len(choice.text)), top_k)
            choice.text += "".join(e.text for e in mine)
            out.append(choice)
        return CompletionResponse(id=_id("cmpl"), created=int(time.time()), model=self.engine.name, choices=out,
                                  usage=_usage(prompts, tokens))

    async def _echo(self, prompts: list[list[int]], top_k: int) -> list[list[Token]]:
        """Every prompt token with its log-prob and top alternatives (the first has none)."""
        group = SequenceGroup.sharing(prompts, all_positions=True, top_k=top_k)
        rows: list[TokenLogprobs] = await asyncio.wrap_future(self.engine.score(group))
        piece = self.engine.piece
        return [[Token(piece(t), lp, [(piece(a), v) for a, v in top]) for t, lp, top in zip(ids, row.logprobs, row.top)]
                for ids, row in zip(prompts, rows)]

    def _completion_stream(self, request: CompletionRequest, encoded, outputs, score_prompts: bool) -> AsyncIterator[str]:
        cid, created, name = _id("cmpl"), int(time.time()), self.engine.name
        top_k = request.logprobs
        sent = [0] * len(encoded)
        tokens: list[list[Token]] = [[] for _ in encoded]

        def chunk(index: int, text: str, new: list[Token], offsets: list[int], finish: str | None) -> str:
            logprobs = None
            if top_k is not None:
                logprobs = CompletionLogprobs()
                _add_completion_logprobs(logprobs, new, offsets, top_k)
            sent[index] += len(text)
            choice = CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish)
            return _sse(CompletionResponse(id=cid, created=created, model=name, choices=[choice]))

        async def events() -> AsyncIterator[str]:
            if request.echo:
                echoed = await self._echo([ids for ids, _ in encoded], top_k) if score_prompts else None
                for i, text in enumerate(request.prompt):
                    yield chunk(i, text, echoed[i] if echoed else [], encoded[i][1], None)
            async for event in outputs:
                tokens[event.index] += event.tokens
                yield chunk(event.index, event.text, event.tokens, _offsets(event.tokens, sent[event.index]), event.finish)
            if request.stream_options and request.stream_options.include_usage:
                usage = _usage([ids for ids, _ in encoded], tokens)
                yield _sse(CompletionResponse(id=cid, created=created, model=name, choices=[], usage=usage))

        return _with_done(events())

    # ------------------------------------------------------------------------------ chat
    async def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse | AsyncIterator[str]:
        """``/v1/chat/completions``: the response, or its server-sent events with ``stream``.

        Raises:
            RequestError: the request breaks a limit, names another model, or the model has no chat template.
        """
        self._check_model(request.model)
        self._within("max_prompts", len(request.messages), f"'messages' has {len(request.messages)} entries", "messages")
        if not self.engine.has_chat_template:
            raise RequestError(f"model {self.engine.name!r} has no chat template; use /v1/completions", param="messages")
        choices, ids = await asyncio.to_thread(self._tokenise_chat, request)
        limit = request.token_limit
        if limit is None:
            max_tokens = max(0, min(self.config.max_new_tokens, self.engine.context_tokens - len(ids)))
        else:
            param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
            self._within("max_new_tokens", limit, f"{param} is {limit}", param)
            max_tokens = limit
        self._check_work([ids], max_tokens, choices, "messages")
        top_k = (request.top_logprobs or 0) if request.logprobs else 0
        outputs = self._outputs([ids], max_tokens, top_k, request.stops, choices)
        if request.stream:
            return self._chat_stream(request, ids, outputs, top_k)
        text, tokens, finish = "", [], "stop"
        async for event in outputs:
            text, tokens, finish = text + event.text, tokens + event.tokens, event.finish or finish
        logprobs = _chat_logprobs(tokens, top_k) if request.logprobs else None
        choice = ChatChoice(index=0, message=AssistantMessage(content=text), logprobs=logprobs, finish_reason=finish)
        return ChatCompletionResponse(id=_id("chatcmpl"), created=int(time.time()), model=self.engine.name,
                                      choices=[choice], usage=_usage([ids], [tokens]))

    def _chat_stream(self, request: ChatCompletionRequest, ids: list[int], outputs, top_k: int) -> AsyncIterator[str]:
        cid, created, name = _id("chatcmpl"), int(time.time()), self.engine.name

        def chunk(delta: DeltaMessage, logprobs=None, finish=None) -> str:
            choice = ChatStreamChoice(index=0, delta=delta, logprobs=logprobs, finish_reason=finish)
            return _sse(ChatCompletionChunk(id=cid, created=created, model=name, choices=[choice]))

        async def events() -> AsyncIterator[str]:
            tokens: list[Token] = []
            yield chunk(DeltaMessage(role="assistant", content=""))
            async for event in outputs:
                tokens += event.tokens
                logprobs = _chat_logprobs(event.tokens, top_k) if request.logprobs else None
                yield chunk(DeltaMessage(content=event.text), logprobs, event.finish)
            if request.stream_options and request.stream_options.include_usage:
                yield _sse(ChatCompletionChunk(id=cid, created=created, model=name, choices=[],
                                               usage=_usage([ids], [tokens])))

        return _with_done(events())

    # ------------------------------------------------------------------------------ the rest
    def models(self) -> ModelList:
        """``/v1/models``: the one served model."""
        return ModelList(data=[ModelCard(id=self.engine.name, max_model_len=self.engine.context_tokens)])

    def health(self) -> dict:
        """``/health``: status, model, and the micro-batches and requests so far."""
        return {"status": "ok", "model": self.engine.name, **self.engine.stats()}


def _add_completion_logprobs(out: CompletionLogprobs, tokens: list[Token], offsets: list[int], top_k: int) -> None:
    for token, offset in zip(tokens, offsets):
        out.tokens.append(token.piece)
        out.token_logprobs.append(_finite(token.logprob))
        out.top_logprobs.append(None if token.logprob is None else {p: _finite(v) for p, v in token.top[:top_k]})
        out.text_offset.append(offset)


def _offsets(tokens: list[Token], start: int) -> list[int]:
    """Where each token starts in the text, the first at ``start``."""
    offsets = []
    for token in tokens:
        offsets.append(start)
        start += len(token.piece)
    return offsets


def _chat_logprobs(tokens: list[Token], top_k: int) -> ChatLogprobs:
    return ChatLogprobs(content=[
        ChatTokenLogprob(**_top_logprob(t.piece, t.logprob), top_logprobs=[TopLogprob(**_top_logprob(p, v)) for p, v in t.top[:top_k]])
        for t in tokens
    ])


def _top_logprob(piece: str, logprob: float) -> dict:
    return {"token": piece, "logprob": _finite(logprob), "bytes": list(piece.encode())}


def _usage(prompts: list[list[int]], tokens: list[list[Token]]) -> Usage:
    prompt, completion = sum(map(len, prompts)), sum(map(len, tokens))
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _finite(value: float | None) -> float | None:
    """A log-prob as JSON can carry it (None stays None).

    -inf becomes :data:`UNLIKELY_LOGPROB`; NaN (a broken model: no probability at all) becomes None, i.e.
    JSON null, rather than a made-up number.
    """
    if value is None or math.isfinite(value):
        return value
    return UNLIKELY_LOGPROB if value == -math.inf else None


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _sse(body: BaseModel | str) -> str:
    """One server-sent event."""
    return f"data: {body if isinstance(body, str) else body.model_dump_json()}\n\n"


async def _with_done(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """``events``, then ``data: [DONE]``; an error mid-stream becomes an error event (the status is sent already)."""
    try:
        async for event in events:
            yield event
    except RequestError as err:
        yield _sse(ErrorResponse.of(err.status, str(err), err.param))
    except Exception as err:  # noqa: BLE001  (the client gets a JSON error event, the log the traceback)
        logger.exception("streamed request failed")
        yield _sse(ErrorResponse.of(500, f"internal error: {type(err).__name__}: {err}"))
    yield _sse("[DONE]")
