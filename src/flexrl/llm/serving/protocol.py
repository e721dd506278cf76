"""The OpenAI-compatible subset ``flexrl serve`` speaks: pydantic request and response models, and errors.

Requests are strict: a field of the wrong type (``"max_tokens": "ten"``, ``1.5``, ``true``) or a field this
server does not know is refused with a 400 naming the field, never coerced or ignored; so is a string that is
not valid Unicode (a lone surrogate such as ``"\\ud800"``). Sampling parameters are accepted and ignored:
decoding is greedy. :func:`parse_request` turns a raw body into a request model or a :class:`RequestError`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

MAX_LOGPROBS = 5
"""Most alternatives per token (the OpenAI limit)."""
MAX_STOPS = 4
"""Most stop strings per request (the OpenAI limit)."""


class RequestError(Exception):
    """A request the server refuses; becomes an OpenAI-style error body.

    Args:
        message: one line naming the bad value and what is allowed.
        status: the HTTP status (4xx: the client's fault).
        param: the request field at fault, if any.
    """

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"holds a lone surrogate ({text[err.start]!r} at position {err.start}); "
                         "strings must be valid Unicode") from None
    return text


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
"""A string that encodes as UTF-8 (JSON escapes can spell lone surrogates; tokenizers fail on them)."""
NonEmptyText = Annotated[Text, AfterValidator(_non_empty)]


def _string_list(what: str):
    def check(value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value if value is None else [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        raise ValueError(f"must be a string or a non-empty list of strings{what}")

    return BeforeValidator(check)


Prompts = Annotated[list[Text], _string_list(" (token-id prompts are not supported)")]
Stops = Annotated[list[NonEmptyText], _string_list(""), Field(max_length=MAX_STOPS)]


def _text_parts(value: Any) -> Any:
    """Chat content as a string, or a list of ``{"type": "text", "text": ...}`` parts joined."""
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and set(p) == {"type", "text"}
                                       and isinstance(p["text"], str) for p in value):
        return "".join(p["text"] for p in value)
    if not isinstance(value, str):
        raise ValueError('must be a string or a list of {"type": "text", "text": ...} parts')
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class StructuredOutputs(_Strict):
    """vLLM's ``structured_outputs``; only ``choice`` here: the answer is the most likely choice."""

    choice: list[NonEmptyText] = Field(min_length=1)


class StreamOptions(_Strict):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts."""

    include_usage: bool = False


class _Sampling(_Strict):
    """Fields both endpoints share. Sampling parameters are checked and ignored: decoding is greedy."""

    model: Text
    stop: Stops | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    structured_outputs: StructuredOutputs | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    user: Text | None = None

    @property
    def stops(self) -> list[str]:
        """The stop strings (none when unset)."""
        return self.stop or []


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: ``max_tokens`` defaults to 16 (the OpenAI default)."""

    prompt: Prompts
    max_tokens: int | None = Field(None, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)


class ChatMessage(_Strict):
    """One chat message: text content only."""

    role: Literal["system", "user", "assistant"]
    content: Annotated[Text, BeforeValidator(_text_parts)]
    name: Text | None = None


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``: without a limit, the answer may fill the context (up to the server's)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (the current name), else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# ---------------------------------------------------------------------------------------------- responses
class Usage(BaseModel):
    """Token counts of a request: its prompts, what was generated, and both."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    """Per-token log-probs of a completion (prompt tokens too with ``echo``); the first prompt token has none.

    A log-prob of -inf is sent as -9999.0 (as OpenAI and vLLM do) and NaN as null, never as a made-up number.
    """

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float | None] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    """One prompt's completion (or, streamed, a piece of it) with its log-probs and finish reason."""

    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class CompletionResponse(BaseModel):
    """The answer of ``POST /v1/completions``, and each of its streamed chunks."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    """A token with its log-prob (None: the model gave NaN) and its UTF-8 bytes."""

    token: str
    logprob: float | None
    bytes: list[int]


class ChatTokenLogprob(TopLogprob):
    """A generated chat token with its log-prob and the most likely tokens in its place."""

    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    """The log-probs of a chat answer's tokens (or, streamed, of a piece of it)."""

    content: list[ChatTokenLogprob]


class AssistantMessage(BaseModel):
    """The model's chat answer."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """The chat answer with its log-probs and finish reason."""

    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletionResponse(BaseModel):
    """The answer of ``POST /v1/chat/completions``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class DeltaMessage(BaseModel):
    """A piece of a streamed chat answer: the role in the first chunk, then text."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatStreamChoice(BaseModel):
    """A streamed chat chunk's piece of the answer, its log-probs, and the finish reason on the last."""

    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed ``POST /v1/chat/completions``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatStreamChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """The served model as ``GET /v1/models`` lists it, with its context length."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "flexrl"
    max_model_len: int


class ModelList(BaseModel):
    """The answer of ``GET /v1/models``: the one served model."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    """What went wrong: one line, its kind, the request field at fault, and the HTTP status."""

    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorInfo

    @classmethod
    def of(cls, status: int, message: str, param: str | None = None) -> ErrorResponse:
        """The body for ``status``; text from the request (a field name, say) is escaped to valid Unicode."""
        kind = "authentication_error" if status == 401 else "invalid_request_error" if status < 500 else "server_error"
        param = None if param is None else _printable(param)[:100]
        return cls(error=ErrorInfo(message=_printable(message), type=kind, param=param, code=status))


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# ---------------------------------------------------------------------------------------------- parsing
RequestModel = TypeVar("RequestModel", bound=_Strict)


def parse_request(body: bytes, model: type[RequestModel]) -> RequestModel:
    """Parse and check a raw JSON body as ``model``.

    Raises:
        RequestError: (400) the body is not JSON, not an object, or breaks the model; the
            message names the first fields at fault and what they allow.
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        raise RequestError("; ".join(_explain(e, model) for e in errors[:3]), param=_location(errors[0])) from None


def _location(error: dict) -> str | None:
    return ".".join(str(part) for part in error["loc"]) or None


def _explain(error: dict, model: type[BaseModel]) -> str:
    kind, location, message = error["type"], _location(error), error["msg"]
    where = None if location is None else repr(location if len(location) <= 60 else location[:60] + "...")[1:-1]
    if kind == "json_invalid":
        hint = ("; strings must be valid Unicode (no lone surrogates such as \\ud800)"
                if "surrogate" in message or "hex escape" in message or "unicode" in message else "")
        return f"malformed JSON: {message.removeprefix('Invalid JSON: ')}{hint}"
    if where is None:
        return "the request body must be a JSON object"
    if kind == "missing":
        return f"'{where}' is required"
    if kind == "extra_forbidden":
        allowed = f"; allowed: {', '.join(model.model_fields)}" if len(error["loc"]) == 1 else ""
        return f"unknown field '{where}'{allowed}"
    got = error.get("input")
    shown = json.dumps(got)[:60] if isinstance(got, (str, int, float, bool)) or got is None else type(got).__name__
    return f"'{where}': {message.removeprefix('Value error, ')} (got {shown})"
