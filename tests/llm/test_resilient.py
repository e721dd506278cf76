"""ResilientBackend: retries, deadlines and the circuit breaker with fakes; then whole agent runs against
servers that fail (answering 500, garbage, nonsense, hanging, killed mid-run)."""

from __future__ import annotations

import time

import httpx
import pytest

from flexrl.llm.base import LLMError, OptionScore
from flexrl.llm.openai_compat import LLMServerError, OpenAICompatBackend
from flexrl.llm.resilient import LLMFault, ResilienceConfig, ResilientBackend
from flexrl.planners.llm_planner import LLMPlanner


class ScriptedBackend:
    """Answers from a script: an exception instance is raised, a number is slept, anything else returned."""

    def __init__(self, name, script=()):
        self.name, self.script, self.calls = name, list(script), 0

    def chat_prompt(self, system, user):
        return f"{system}|{user}"

    def score_options(self, prompt, options, cache_prefix=None):
        self.calls += 1
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        if isinstance(step, float):
            time.sleep(step)
        return [OptionScore(-1.0 if self.name == "primary" else -2.0, 1) for _ in options]

    def generate(self, prompt, max_new_tokens):
        return self.name


class FakeClock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def make(primary, fallback=None, **config):
    faults: list[LLMFault] = []
    clock = FakeClock()
    cfg = ResilienceConfig(**{"call_timeout_s": None, **config})
    backend = ResilientBackend(primary, fallback, cfg, on_fault=faults.append, clock=clock, sleep=clock.sleep)
    return backend, faults, clock


def down(kind="connection"):
    return LLMServerError("server down", kind)


def test_retries_with_backoff_then_succeeds():
    primary = ScriptedBackend("primary", [down(), down("timeout")])
    backend, faults, clock = make(primary, retries=2, backoff_s=0.1)
    assert backend.score_options("p", [" a"])[0].logprob == -1.0
    assert [(f.kind, f.attempt, f.action) for f in faults] == [("connection", 1, "retry"), ("timeout", 2, "retry")]
    assert clock.slept == [0.1, 0.2] and primary.calls == 3 and backend.circuit == "closed"


def test_exhausted_retries_go_to_the_fallback_or_raise():
    fallback = ScriptedBackend("fallback")
    backend, faults, _ = make(ScriptedBackend("primary", [down()] * 3), fallback, retries=2)
    assert backend.score_options("p", [" a"])[0].logprob == -2.0
    assert [f.action for f in faults] == ["retry", "retry", "fallback"]
    backend, faults, _ = make(ScriptedBackend("primary", [down()] * 3), None, retries=2)
    with pytest.raises(LLMError, match="server down"):
        backend.score_options("p", [" a"])
    assert faults[-1].action == "raise"


def test_client_errors_are_not_retried():
    primary = ScriptedBackend("primary", [LLMServerError("bad request", "http", 400)])
    backend, faults, clock = make(primary, ScriptedBackend("fallback"), retries=3)
    backend.score_options("p", [" a"])
    assert primary.calls == 1 and [f.action for f in faults] == ["fallback"] and clock.slept == []


def test_circuit_opens_skips_the_primary_and_recovers_after_a_trial():
    primary = ScriptedBackend("primary", [down()] * 4)
    backend, faults, clock = make(primary, ScriptedBackend("fallback"), retries=1, failure_threshold=2, reset_after_s=30)
    for _ in range(2):
        backend.score_options("p", [" a"])
    assert backend.circuit == "open" and primary.calls == 4
    backend.score_options("p", [" a"])  # skipped: the circuit is open
    assert primary.calls == 4 and (faults[-1].kind, faults[-1].attempt, faults[-1].circuit) == ("circuit_open", 0, "open")
    clock.now += 31
    assert backend.score_options("p", [" a"])[0].logprob == -1.0  # the trial call succeeds
    assert backend.circuit == "closed" and primary.calls == 5
    # A failed trial opens the circuit again at once, without retries.
    primary.script = [down()] * 5
    for _ in range(2):
        backend.score_options("p", [" a"])
    assert backend.circuit == "open" and primary.calls == 9
    clock.now += 31
    backend.score_options("p", [" a"])
    assert backend.circuit == "open" and primary.calls == 10


def test_a_call_past_its_deadline_is_abandoned_and_not_repeated_while_it_runs():
    primary = ScriptedBackend("primary", [0.6])
    fallback = ScriptedBackend("fallback")
    faults = []
    backend = ResilientBackend(primary, fallback, ResilienceConfig(call_timeout_s=0.1, retries=1, backoff_s=0),
                               on_fault=faults.append)
    start = time.perf_counter()
    assert backend.score_options("p", [" a"])[0].logprob == -2.0
    assert time.perf_counter() - start < 0.5
    assert primary.calls == 1  # the retry did not call the primary a second time while the first runs
    assert [(f.kind, f.action) for f in faults] == [("timeout", "retry"), ("timeout", "fallback")]
    time.sleep(0.6)
    assert backend.score_options("p", [" a"])[0].logprob == -1.0 and primary.calls == 2


def test_fallback_failure_and_broken_fault_callback():
    backend, faults, _ = make(ScriptedBackend("primary", [down()]), ScriptedBackend("fallback", [RuntimeError("oom")]),
                              retries=0)
    with pytest.raises(LLMError, match="oom"):
        backend.score_options("p", [" a"])
    assert [(f.backend, f.action) for f in faults] == [("primary", "fallback"), ("fallback", "raise")]

    def broken(fault):
        raise OSError("disk full")

    backend = ResilientBackend(ScriptedBackend("primary", [down()]), ScriptedBackend("fallback"),
                               ResilienceConfig(retries=0), on_fault=broken)
    assert backend.score_options("p", [" a"])[0].logprob == -2.0


def test_config_validation():
    for bad in ({"call_timeout_s": 0}, {"retries": -1}, {"failure_threshold": 0}, {"backoff_s": -1}):
        with pytest.raises(ValueError):
            ResilienceConfig(**bad)


# ---------------------------------------------------------------------------------- whole runs

FAULT_CONFIG = ResilienceConfig(call_timeout_s=5, retries=1, backoff_s=0.01, failure_threshold=2, reset_after_s=600)


def assert_same_decisions(run, reference):
    assert run.summary["steps"] == reference.summary["steps"]
    assert [(d["step"], d["call"]) for d in run.decisions] == [(d["step"], d["call"]) for d in reference.decisions]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["500", "garbage", "nonsense", "hang"])
def test_runs_finish_on_the_fallback_and_log_every_fault(mode, misbehaving, local_backend, local_run, episode, tmp_path):
    bad = misbehaving(mode)
    backend = ResilientBackend(OpenAICompatBackend(bad.url, model="m", timeout=0.5), local_backend, FAULT_CONFIG)
    run = episode(tmp_path, LLMPlanner(backend), faults_from=backend)
    faults = run.of_type("llm_fault")
    failed_requests = [f for f in faults if f["kind"] != "circuit_open"]
    assert bad.requests >= 2 and len(failed_requests) == bad.requests  # every failed request is in the log
    expected = {"500": "http", "garbage": "bad_response", "nonsense": "bad_response", "hang": "timeout"}[mode]
    assert {f["kind"] for f in failed_requests} == {expected}
    # The circuit opened, later calls skipped the server, and the fallback model made every decision.
    assert any(f["kind"] == "circuit_open" for f in faults) and all(f["action"] in ("retry", "fallback") for f in faults)
    assert run.summary["fallbacks"] == 0 and all(d["scores"] for d in run.decisions)
    assert_same_decisions(run, local_run)


@pytest.mark.slow
def test_without_a_fallback_the_runner_keeps_the_skill(misbehaving, episode, tmp_path):
    bad = misbehaving("500")
    backend = ResilientBackend(OpenAICompatBackend(bad.url, model="m", timeout=0.5), None, FAULT_CONFIG)
    run = episode(tmp_path, LLMPlanner(backend), faults_from=backend)
    assert run.summary["steps"] > 0 and run.summary["fallbacks"] == len(run.decisions) >= 2
    assert len(run.of_type("fallback")) == len(run.decisions)
    assert {f["action"] for f in run.of_type("llm_fault")} == {"retry", "raise"}


@pytest.mark.slow
def test_server_killed_mid_run(local_backend, local_run, episode, api_key, start_server, tmp_path):
    # A second server, bound to every interface: that needs the API key, which the client sends.
    server = start_server("--host", "0.0.0.0", "--port", "0", "--threads", "1", "--api-key", api_key)
    url = server.url.replace("0.0.0.0", "127.0.0.1")
    served = {}

    def kill_after_first(step, context, decision):
        if not served:
            health = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=30).json()
            served.update(step=step, requests=health["requests"])
            server.kill()

    backend = ResilientBackend(OpenAICompatBackend(url, api_key=api_key, timeout=60), local_backend, FAULT_CONFIG)
    run = episode(tmp_path, LLMPlanner(backend), faults_from=backend, on_decision=kill_after_first)
    faults = run.of_type("llm_fault")
    assert served["requests"] >= 2  # the first decision (and its calibration) came from the server
    assert faults and all(f["step"] > served["step"] for f in faults)
    assert {f["kind"] for f in faults} <= {"connection", "circuit_open"} and faults[0]["kind"] == "connection"
    assert run.summary["fallbacks"] == 0
    assert_same_decisions(run, local_run)
