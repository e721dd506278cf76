"""An :class:`~flexrl.llm.base.LLMBackend` over any OpenAI-compatible server.

Works with ``flexrl serve``, vLLM, SGLang, TGI and llama.cpp's server. Options
are scored in one of two ways (``scoring``):

- ``"logprobs"``: one ``/v1/completions`` request with every ``prompt + option``
  text, ``echo=true``, ``logprobs=1`` and no new tokens; an option's score is the
  sum of the log-probs of the echoed tokens that cover its text. Exact
  log-likelihoods, as the local backend computes them. Needs a server that returns
  prompt log-probs (``flexrl serve``, vLLM; some need ``echo_max_tokens=1``).
- ``"choice"``: constrained decoding with vLLM's (>= 0.12) ``{"structured_outputs":
  {"choice": [...]}}``; the chosen option scores 0 and every other
  :data:`UNCHOSEN_LOGPROB`. There are no likelihoods to calibrate: ``likelihoods`` is False and
  the planner skips calibration.

httpx comes with the ``serve`` extra and is imported when a backend is built.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from flexrl.llm.base import LLMError, OptionScore

SCORING_MODES = ("logprobs", "choice")
UNCHOSEN_LOGPROB = -1e9
"""Score of every option that constrained choice did not pick (finite, so logs stay valid JSON)."""
SERVE_EXTRA = "pip install 'flexrl[serve]'"
CHATML = "chatml"
"""The built-in chat template: ChatML, as SmolLM2 and Qwen2.5 use when a system message is given."""


class LLMServerError(LLMError):
    """A request to the server failed.

    Attributes:
        kind: "timeout", "connection", "http" (an error status) or "bad_response" (not the expected JSON).
        status: the HTTP status, for "http".
        retryable: whether the same request may succeed later (not for a 4xx other than 408 and 429).
    """

    def __init__(self, message: str, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status
        self.retryable = kind != "http" or status is None or status >= 500 or status in (408, 429)


class OpenAICompatBackend:
    """Scores, chooses and generates through an OpenAI-compatible HTTP API.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000`` (``/v1`` is appended unless present).
        model: the served model id; None: the first one ``/v1/models`` lists.
        api_key: sent as ``Authorization: Bearer KEY``.
        timeout: seconds to connect and to wait for each answer.
        scoring: "logprobs" or "choice" (see the module docstring).
        chat_template: "chatml", or a Jinja chat template (as in a tokenizer config) to render prompts locally.
        echo_max_tokens: ``max_tokens`` of scoring requests; 1 for servers that refuse 0 with ``echo``.

    Raises:
        ValueError: a setting is out of range.
        ImportError: httpx is missing; the message names the extra.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        scoring: str = "logprobs",
        chat_template: str = CHATML,
        echo_max_tokens: int = 0,
    ) -> None:
        if scoring not in SCORING_MODES:
            raise ValueError(f"scoring={scoring!r}; allowed: {', '.join(SCORING_MODES)}")
        if not timeout > 0:
            raise ValueError(f"timeout={timeout}; allowed: a positive number of seconds")
        if echo_max_tokens not in (0, 1):
            raise ValueError(f"echo_max_tokens={echo_max_tokens}; allowed: 0 or 1")
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"base_url={base_url!r}; expected http(s)://host:port[/v1]")
        try:
            import httpx
        except ImportError as err:
            raise ImportError(f"the openai_compat backend needs httpx: {SERVE_EXTRA}") from err
        self._httpx = httpx
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else f"{root}/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._model = model
        self.scoring, self.echo_max_tokens = scoring, echo_max_tokens
        self._template = None if chat_template == CHATML else _jinja(chat_template)
        self.name = model or self.base_url

    @property
    def likelihoods(self) -> bool:
        """Whether scores are log-likelihoods (False under constrained choice: 0 for the pick, a floor else)."""
        return self.scoring == "logprobs"

    def chat_prompt(self, system: str, user: str) -> str:
        """Render a system and a user message with the configured chat template (locally, no request)."""
        if self._template is None:
            return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self._template.render(messages=messages, add_generation_prompt=True)

    def score_options(self, prompt: str, options: list[str], cache_prefix: str | None = None) -> list[OptionScore]:
        """Score each option as the continuation of ``prompt``; ``cache_prefix`` is left to the server's prefix cache.

        Raises:
            LLMServerError: the request failed or the answer is not what was asked for.
        """
        if not options:
            return []
        if self.scoring == "choice":
            return self._choose(prompt, options)
        body = {"prompt": [prompt + o for o in options], "max_tokens": self.echo_max_tokens, "echo": True,
                "logprobs": 1, "temperature": 0}
        choices = self._choices(self._post("/completions", body), len(options))
        return [_option_score(c, prompt, o) for c, o in zip(choices, options)]

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedily continue ``prompt`` (``temperature=0``).

        Raises:
            LLMServerError: the request failed or the answer has no text.
        """
        body = {"prompt": prompt, "max_tokens": max_new_tokens, "temperature": 0}
        return self._text(self._choices(self._post("/completions", body), 1)[0])

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # ------------------------------------------------------------------------------ requests
    def _choose(self, prompt: str, options: list[str]) -> list[OptionScore]:
        body = {"prompt": prompt, "temperature": 0, "structured_outputs": {"choice": options},
                # a token covers at least one character, so this cannot cut a choice short
                "max_tokens": max(len(o) for o in options) + 8}
        text = self._text(self._choices(self._post("/completions", body), 1)[0])
        if text not in options:
            raise LLMServerError(f"constrained choice answered {text[:80]!r}, which is not one of the options", "bad_response")
        return [OptionScore(0.0 if o == text else UNCHOSEN_LOGPROB, 0) for o in options]

    def _post(self, path: str, body: dict) -> dict:
        httpx = self._httpx
        body = {"model": self._resolve_model(), **body}
        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException as err:
            raise LLMServerError(f"{self.base_url}{path}: no answer in time ({type(err).__name__})", "timeout") from err
        except httpx.HTTPError as err:
            raise LLMServerError(f"{self.base_url}{path}: {type(err).__name__}: {err}", "connection") from err
        return self._json(response, path)

    def _json(self, response, path: str) -> Any:
        if response.status_code >= 400:
            raise LLMServerError(f"{self.base_url}{path}: HTTP {response.status_code}: {_error_message(response)}",
                                 "http", response.status_code)
        try:
            return response.json()
        except ValueError as err:
            raise LLMServerError(f"{self.base_url}{path}: answer is not JSON: {response.text[:80]!r}", "bad_response") from err

    def _resolve_model(self) -> str:
        if self._model is None:
            try:
                listing = self._json(self._client.get("/models"), "/models")
                self._model = listing["data"][0]["id"]
            except self._httpx.TimeoutException as err:
                raise LLMServerError(f"{self.base_url}/models: no answer in time", "timeout") from err
            except self._httpx.HTTPError as err:
                raise LLMServerError(f"{self.base_url}/models: {type(err).__name__}: {err}", "connection") from err
            except (KeyError, IndexError, TypeError) as err:
                raise LLMServerError(f"{self.base_url}/models lists no model", "bad_response") from err
            self.name = self._model
        return self._model

    def _choices(self, answer: Any, expected: int) -> list[dict]:
        """The answer's choices ordered by index, one per prompt."""
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or len(choices) != expected or not all(isinstance(c, dict) for c in choices):
            raise LLMServerError(f"expected {expected} choice(s) in the answer, got {str(answer)[:120]!r}", "bad_response")
        indices = [c.get("index", i) for i, c in enumerate(choices)]
        if not all(type(i) is int for i in indices) or sorted(indices) != list(range(expected)):
            raise LLMServerError(f"the answer's choice indices {indices[:8]} do not match the prompts", "bad_response")
        return [c for _, c in sorted(zip(indices, choices), key=lambda pair: pair[0])]

    @staticmethod
    def _text(choice: dict) -> str:
        text = choice.get("text")
        if not isinstance(text, str):
            raise LLMServerError(f"the answer's choice has no text: {str(choice)[:120]!r}", "bad_response")
        return text


def _option_score(choice: dict, prompt: str, option: str) -> OptionScore:
    """Sum the echoed log-probs of the tokens overlapping the option's characters."""
    lp = choice.get("logprobs")
    tokens = lp.get("token_logprobs") if isinstance(lp, dict) else None
    offsets = lp.get("text_offset") if isinstance(lp, dict) else None
    if not (isinstance(tokens, list) and isinstance(offsets, list) and len(tokens) == len(offsets) and tokens):
        raise LLMServerError("the answer has no echoed prompt log-probs (does the server support echo?)", "bad_response")
    start, end = len(prompt), len(prompt) + len(option)
    total, count = 0.0, 0
    for i, (value, offset) in enumerate(zip(tokens, offsets)):
        token_end = offsets[i + 1] if i + 1 < len(offsets) else end
        if not isinstance(offset, int) or not isinstance(token_end, int):
            raise LLMServerError("the answer's text offsets are not integers", "bad_response")
        # A token that straddles the prompt's end belongs to the option too: the server's
        # tokenizer merged them, and that token is how the model writes the option's start.
        if offset < end and token_end > start:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise LLMServerError(f"the answer's log-prob for an option token is {value!r}", "bad_response")
            total += value
            count += 1
    if count == 0:
        raise LLMServerError("the echoed tokens do not cover the option's text", "bad_response")
    return OptionScore(total, count)


def _error_message(response) -> str:
    try:
        error = response.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error or response.text)[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


def _jinja(source: str):
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as err:  # jinja2 comes with transformers
        raise ImportError(f"a custom chat template needs jinja2 ({err})") from err
    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
