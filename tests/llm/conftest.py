"""Shared fixtures of the LLM serving tests: the embedded model, a real `flexrl serve` process,
misbehaving HTTP servers, and agent runs whose decisions and events can be compared."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.runner import AgentConfig, AgentRunner
from flexrl.encoders import EncoderConfig, encode
from flexrl.envs.arena_env import ArenaEnv
from flexrl.llm.batch_types import ScoreRequest
from flexrl.planners.base import Instruction, PlanContext
from flexrl.planners.llm_planner import LLMPlanner
from flexrl.skills.library import candidate_calls
from flexrl.skills.policies import PolicySet

API_KEY = "test-key-123"
INSTRUCTIONS = ("Avoid the ball!", "Go to the red pad")
SERVER_START_TIMEOUT_S = 180


class ServerProcess:
    """`flexrl serve` in a child process; ``url`` is known once it accepts connections."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flexrl.cli", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.output: list[str] = []
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        self.url = None
        while self.url is None:
            try:
                line = lines.get(timeout=SERVER_START_TIMEOUT_S)
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"server did not start: {''.join(self.output)}") from None
            if line is None:
                raise RuntimeError(f"server exited ({self.proc.wait()}): {''.join(self.output)}")
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()

    def _pump(self, lines: queue.Queue) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            lines.put(line)
        lines.put(None)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to answer anything further."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def local_backend():
    """The embedded model in this process (default model cache, as `flexrl run` uses it)."""
    from flexrl.llm.transformers_backend import TransformersBackend

    return TransformersBackend(threads=1)


@pytest.fixture(scope="session")
def planner_requests(local_backend):
    """Factory: the planner's real prompts and options for arena layouts ``seeds``."""

    def make(seeds, instructions=INSTRUCTIONS) -> list[ScoreRequest]:
        planner, env, out = LLMPlanner(local_backend), ArenaEnv(), []
        for i, seed in enumerate(seeds):
            env.reset(seed=seed)
            world = env.world_state()
            context = PlanContext(world, encode(world, EncoderConfig()), (Instruction(instructions[i % len(instructions)]),),
                                  tuple(candidate_calls(world)))
            full, prefix = planner.prompt(context)
            out.append(ScoreRequest(full, tuple(str(c) for c in context.candidates), prefix))
        return out

    return make


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


@pytest.fixture
def start_server():
    """Factory: start a `flexrl serve` process with the given arguments; stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        started.append(ServerProcess(*args))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def server(local_backend):
    """One `flexrl serve` process for the session, on 127.0.0.1 with an API key (the local backend filled the cache)."""
    proc = ServerProcess("--port", "0", "--threads", "1", "--api-key", API_KEY, "--batch-wait-ms", "20")
    yield proc
    proc.stop()


class MisbehavingServer:
    """An HTTP server on 127.0.0.1 that answers every request wrongly.

    Modes: "500" (an error status), "garbage" (200 with bytes that are not JSON), "nonsense"
    (200 with JSON of the wrong shape), "hang" (never answers until closed).
    """

    def __init__(self, mode: str) -> None:
        self.mode, self.requests = mode, 0
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.requests += 1
                if owner.mode == "hang":
                    owner.release.wait(60)
                    return
                status, body = {"500": (500, b'{"error": {"message": "boom"}}'), "garbage": (200, b"\x00\xffnot json"),
                                "nonsense": (200, json.dumps({"choices": [{"text": 3}]}).encode())}[owner.mode]
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def misbehaving():
    """Factory of misbehaving servers, closed after the test."""
    servers = []

    def make(mode: str) -> MisbehavingServer:
        servers.append(MisbehavingServer(mode))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@dataclass
class AgentRun:
    """The outcome of one episode: its summary, its events, and the decisions' calls and scores."""

    summary: dict
    events: list[dict]

    @property
    def decisions(self) -> list[dict]:
        return [e for e in self.events if e["type"] == "decision"]

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


RUN_STEPS = 160


def run_episode(tmp_path: Path, planner, faults_from=None, on_decision=None) -> AgentRun:
    """One short seeded episode with an instruction switch at step 80, logged to an events.jsonl.

    ``faults_from`` (a ResilientBackend) gets its faults written to the log as ``llm_fault`` events at
    the current control step, as a run wires them.
    """
    path = tmp_path / f"events-{len(list(tmp_path.glob('events-*')))}.jsonl"
    log = EventLog(path)
    clock = {"step": 0}
    if faults_from is not None:
        faults_from.on_fault = lambda fault: log.emit("llm_fault", clock["step"], **fault.fields())
    channel = InstructionChannel(
        Instruction("Go to the ball", "go_to(ball)"), [(80, Instruction("Avoid the ball!", "avoid(ball)", "schedule"))]
    )
    runner = AgentRunner(
        ArenaEnv(ball_mode="drift", ball_speed=0.3), planner, PolicySet.load(), channel,
        AgentConfig(max_steps=RUN_STEPS, record_video=False), log,
        on_decision=on_decision, on_step=lambda step: clock.update(step=step + 1),
    )
    summary = runner.run(seed=0)
    log.close()
    return AgentRun(summary, [json.loads(line) for line in path.read_text().splitlines()])


@pytest.fixture(scope="session")
def episode():
    """Factory: :func:`run_episode`."""
    return run_episode


@pytest.fixture(scope="session")
def local_run(local_backend, tmp_path_factory):
    """The reference episode: the LLM planner on the embedded model in this process."""
    return run_episode(tmp_path_factory.mktemp("local-run"), LLMPlanner(local_backend))
