"""A backend wrapper that keeps an agent deciding while its LLM is down, slow or answering nonsense.

Each call to the primary backend gets a deadline and bounded retries with
exponential backoff. After ``failure_threshold`` failed calls in a row a circuit
breaker opens: calls skip the primary for ``reset_after_s`` seconds, then one
trial call decides whether it closes again. A call that fails for good goes to
the fallback backend (e.g. the embedded model), or raises
:class:`~flexrl.llm.base.LLMError`, on which the agent runner keeps the
current skill. Every fault (a failed attempt, a short-circuited call, a failed
fallback) is passed to ``on_fault``, e.g. to write it to the run's events log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from flexrl.llm.base import LLMBackend, LLMError, OptionScore

logger = logging.getLogger(__name__)

FAULT_KINDS = ("timeout", "connection", "http", "bad_response", "error", "circuit_open")


@dataclass
class ResilienceConfig:
    """Deadlines, retries and the circuit breaker of a :class:`ResilientBackend`.

    Attributes:
        call_timeout_s: deadline of each attempt, enforced by the wrapper (None: only the
            backend's own timeouts apply). An attempt past its deadline is abandoned, not
            stopped: until it returns, further calls skip the primary.
        retries: further attempts after a failed one (0: none).
        backoff_s: wait before the first retry; doubled before each further one.
        max_backoff_s: longest wait between attempts.
        failure_threshold: failed calls in a row (each after its retries) that open the circuit.
        reset_after_s: how long the circuit stays open before one trial call.
    """

    call_timeout_s: float | None = 10.0
    retries: int = 2
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    failure_threshold: int = 3
    reset_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.call_timeout_s is not None and not self.call_timeout_s > 0:
            raise ValueError(f"call_timeout_s={self.call_timeout_s}; allowed: a positive number or None")
        if self.retries < 0 or self.failure_threshold < 1:
            raise ValueError(f"retries={self.retries}, failure_threshold={self.failure_threshold}; allowed: >= 0 and >= 1")
        if min(self.backoff_s, self.max_backoff_s, self.reset_after_s) < 0:
            raise ValueError("backoff_s, max_backoff_s and reset_after_s must not be negative")


@dataclass(frozen=True)
class LLMFault:
    """One fault, as reported to ``on_fault``.

    Attributes:
        kind: one of :data:`FAULT_KINDS`.
        operation: "score_options" or "generate".
        backend: name of the backend that failed.
        attempt: 1-based attempt of the call (0 for a call the open circuit skipped).
        error: the error message.
        action: what follows: "retry", "fallback" (to the fallback backend) or "raise" (LLMError).
        circuit: the breaker's state after the fault: "closed", "open" or "half_open".
    """

    kind: str
    operation: str
    backend: str
    attempt: int
    error: str
    action: str
    circuit: str

    def fields(self) -> dict[str, Any]:
        """The fault as a flat dict (the ``llm_fault`` event's fields)."""
        return dataclasses.asdict(self)


class _DeadlineExceeded(TimeoutError):
    """An attempt did not return within ``call_timeout_s``."""


class ResilientBackend:
    """Wraps a primary :class:`LLMBackend` with deadlines, retries, a circuit breaker and a fallback.

    Args:
        primary: the backend to use while it works (e.g. an ``OpenAICompatBackend``).
        fallback: the backend for calls the primary fails (None: raise LLMError instead).
        config: deadlines, retries and breaker settings.
        on_fault: called with every :class:`LLMFault`; its own errors are logged, not raised.
        clock: monotonic time in seconds (for tests).
        sleep: waits between attempts (for tests).

    Attributes:
        circuit: the breaker's state: "closed", "open" or "half_open".
    """

    def __init__(
        self,
        primary: LLMBackend,
        fallback: LLMBackend | None = None,
        config: ResilienceConfig | None = None,
        on_fault: Callable[[LLMFault], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.primary, self.fallback = primary, fallback
        self.config = config or ResilienceConfig()
        self.on_fault, self._clock, self._sleep = on_fault, clock, sleep
        self.circuit = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._abandoned: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The primary's name (a served backend learns its model's name on first use)."""
        return self.primary.name

    @property
    def likelihoods(self) -> bool:
        """Whether the primary's scores are log-likelihoods (see :class:`~flexrl.llm.base.LLMBackend`)."""
        return getattr(self.primary, "likelihoods", True)

    def chat_prompt(self, system: str, user: str) -> str:
        """The primary's rendering (the fallback scores the same text, whatever its own template)."""
        return self.primary.chat_prompt(system, user)

    def score_options(self, prompt: str, options: list[str], cache_prefix: str | None = None) -> list[OptionScore]:
        """Score through the primary, else the fallback.

        Raises:
            LLMError: both failed, or the primary failed and there is no fallback.
        """
        return self._call("score_options", lambda backend: backend.score_options(prompt, options, cache_prefix))

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Generate through the primary, else the fallback.

        Raises:
            LLMError: both failed, or the primary failed and there is no fallback.
        """
        return self._call("generate", lambda backend: backend.generate(prompt, max_new_tokens))

    # ------------------------------------------------------------------------------ the policy
    def _call(self, operation: str, call: Callable[[LLMBackend], Any]) -> Any:
        with self._lock:
            if self.circuit == "open" and self._clock() - self._opened_at >= self.config.reset_after_s:
                self.circuit = "half_open"
            state = self.circuit
        if state == "open":
            error = f"circuit open after {self._failures} failed calls; retrying the primary in at most {self.config.reset_after_s:g} s"
            self._report("circuit_open", operation, self.primary.name, 0, error, self._give_up_action())
            return self._give_up(operation, call, LLMError(error))
        attempts = 1 if state == "half_open" else 1 + self.config.retries
        delay = self.config.backoff_s
        for attempt in range(1, attempts + 1):
            try:
                result = self._attempt(call)
            except Exception as err:  # noqa: BLE001  (any failure of the primary is a fault)
                kind = _kind(err)
                final = attempt == attempts or not getattr(err, "retryable", kind != "error")
                if final:
                    with self._lock:
                        self._failures += 1
                        if state == "half_open" or self._failures >= self.config.failure_threshold:
                            self.circuit, self._opened_at = "open", self._clock()
                    self._report(kind, operation, self.primary.name, attempt, str(err), self._give_up_action())
                    return self._give_up(operation, call, err)
                self._report(kind, operation, self.primary.name, attempt, str(err), "retry")
                self._sleep(min(delay, self.config.max_backoff_s))
                delay *= 2
            else:
                with self._lock:
                    self._failures, self.circuit = 0, "closed"
                return result
        raise AssertionError("unreachable: the last attempt returns or gives up")

    def _attempt(self, call: Callable[[LLMBackend], Any]) -> Any:
        """One call to the primary under the deadline, in a worker thread when there is one."""
        timeout = self.config.call_timeout_s
        if timeout is None:
            return call(self.primary)
        if self._abandoned is not None and self._abandoned.is_alive():
            raise _DeadlineExceeded("an earlier call past its deadline is still running; not calling the primary again yet")
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = call(self.primary)
            except BaseException as err:  # noqa: BLE001  (handed to the caller's thread)
                box["error"] = err

        worker = threading.Thread(target=run, name="flexrl-llm-call", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self._abandoned = worker
            raise _DeadlineExceeded(f"no answer within {timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _give_up(self, operation: str, call: Callable[[LLMBackend], Any], error: BaseException) -> Any:
        if self.fallback is None:
            raise LLMError(f"{self.primary.name} failed: {error}") from error
        try:
            return call(self.fallback)
        except Exception as err:  # noqa: BLE001  (reported, then raised as LLMError)
            self._report(_kind(err), operation, self.fallback.name, 1, str(err), "raise")
            raise LLMError(f"{self.primary.name} failed ({error}) and so did the fallback {self.fallback.name} ({err})") from err

    def _give_up_action(self) -> str:
        return "fallback" if self.fallback is not None else "raise"

    def _report(self, kind: str, operation: str, backend: str, attempt: int, error: str, action: str) -> None:
        if self.on_fault is None:
            return
        fault = LLMFault(kind, operation, backend, attempt, error[:500], action, self.circuit)
        try:
            self.on_fault(fault)
        except Exception:  # noqa: BLE001  (a broken log must not take the agent down)
            logger.exception("on_fault callback failed for %s", fault)


def _kind(err: BaseException) -> str:
    """The fault kind of an exception: the server error's own, else by type."""
    kind = getattr(err, "kind", None)
    if kind in FAULT_KINDS:
        return kind
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, ConnectionError):
        return "connection"
    return "error"
