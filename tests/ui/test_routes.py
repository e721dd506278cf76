"""The control room's API on a real server, with real episodes (oracle planner)."""

import json
import urllib.request

import pytest

from conftest import call, room_config, wait_for
from flexrl.agent.runner import AgentConfig
from flexrl.agent.session import RunConfig, run_agent
from flexrl.planners.config import PlannerConfig
from flexrl.runs.config import ExperimentConfig


def test_an_instruction_reaches_the_episode_and_the_skill_follows(room):
    status, reply = call(room.url, "/instruction", {"text": "Avoid the ball!", "intent": "avoid(ball)"})
    assert status == 202 and reply["accepted"]
    state = wait_for(lambda: (s := call(room.url, "/api/state")[1])["skill"] == "avoid(ball)" and s, timeout=10)
    assert state["criterion"].startswith("at least 0.80 m from the ball")
    assert "m away" in state["standing"] and state["instruction"] == "Avoid the ball!"
    decision = [d for d in state["decisions"] if d["call"] == "avoid(ball)"][-1]
    assert decision["instruction"] == "Avoid the ball!" and "avoid(ball)" in decision["scores"]


def test_the_stream_sends_jpeg_frames_and_the_rate_holds_real_time(room):
    with urllib.request.urlopen(room.url + "stream.mjpg", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        data = b""
        while data.count(b"--frame\r\n") < 6:
            data += stream.read1(65536)
    part = data.split(b"--frame\r\n")[1]
    head, _, body = part.partition(b"\r\n\r\n")
    assert b"Content-Type: image/jpeg" in head and body[:2] == b"\xff\xd8"
    assert call(room.url, "/api/state")[1]["steps_per_s"] > 0  # its bar is measured by bench/ui_stream.py


def test_bad_controls_are_one_line_4xx_and_the_episode_goes_on(room):
    before = call(room.url, "/api/state")[1]["step"]
    cases = [({"action": "explode"}, 400, "action='explode'; allowed: start, pause, resume, reset, reseed"),
             ({"action": "reset", "planner": "psychic"}, 400, "planner='psychic'; allowed: llm, oracle, policy, random"),
             ({"action": "reset", "seed": -4}, 400, "seed=-4; allowed"),
             ({"action": "reset", "colour": "red"}, 400, "colour: Extra inputs are not permitted"),
             (b"{not json", 400, "Invalid JSON"),
             (b"x" * 70_000, 413, "allowed: at most 64000")]
    for body, status, error in cases:
        got, reply = call(room.url, "/api/control", body)
        assert got == status and error in reply["error"] and "\n" not in reply["error"], reply
    got, reply = call(room.url, "/api/control", b"action=pause", {"Content-Type": "application/x-www-form-urlencoded"})
    assert got == 415 and "allowed: application/json" in reply["error"]
    got, reply = call(room.url, "/api/control", {"action": "pause"}, {"Origin": "https://evil.example"})
    assert got == 403 and reply["error"].startswith("Origin 'https://evil.example' is refused")
    wait_for(lambda: call(room.url, "/api/state")[1]["step"] > before + 5, timeout=10)


def test_pause_resume_and_reseed(room):
    assert call(room.url, "/api/control", {"action": "pause"})[0] == 202
    wait_for(lambda: call(room.url, "/api/state")[1]["status"] == "paused", timeout=10)
    step = call(room.url, "/api/state")[1]["step"]
    wait_for(lambda: True, timeout=1)
    import time
    time.sleep(0.5)
    assert call(room.url, "/api/state")[1]["step"] == step
    assert call(room.url, "/api/control", {"action": "resume"})[0] == 202
    wait_for(lambda: call(room.url, "/api/state")[1]["step"] > step, timeout=10)
    seed = call(room.url, "/api/state")[1]["seed"]
    assert call(room.url, "/api/control", {"action": "reseed"})[0] == 202
    wait_for(lambda: (s := call(room.url, "/api/state")[1])["seed"] == seed + 1 and s["status"] == "running", timeout=20)


def test_the_runs_browser_reads_runs_and_nothing_outside_them(room):
    runs = wait_for(lambda: call(room.url, "/api/runs")[1])
    path = runs[-1]["path"]
    assert path.startswith("ui/") and runs[-1]["kind"] == "run"
    status, detail = call(room.url, f"/api/run?path={path}")
    assert status == 200 and detail["meta"]["experiment"] == "ui" and detail["config"].startswith("env:")
    for bad in ("../..", "/etc", "ui/../../"):
        status, reply = call(room.url, f"/api/run?path={bad}")
        assert status == 404 and "allowed: a run's path inside the workspace" in reply["error"]
    status, reply = call(room.url, f"/api/run/file?path={path}&name=../../../../etc/passwd")
    assert status == 404 and "allowed: a file of the run" in reply["error"]
    status, reply = call(room.url, f"/api/run/file?path={path}&name=meta.json")
    assert status == 200 and reply["experiment"] == "ui"


def test_a_command_line_run_serves_the_page_without_controls(tmp_path):
    urls, seen = [], {}

    def look(step):
        if step == 5:
            base = urls[1]
            seen["control"] = call(base, "/api/control", {"action": "pause"})
            seen["options"] = call(base, "/api/options")[1]
            seen["page"] = urllib.request.urlopen(base, timeout=10).read()
            seen["instruction"] = call(base, "/instruction", {"text": "Stop", "intent": "stop"})[0]

    cfg = room_config(tmp_path, ui=True, max_steps=40)
    run, summary = run_agent(cfg, on_step=look, on_serving=urls.append)
    assert urls[0].endswith("/instruction") and urls[1].endswith("/")
    status, reply = seen["control"]
    assert status == 409 and "started from the command line" in reply["error"]
    assert seen["options"]["controls"] is False and b"flex-rl control room" in seen["page"]
    assert seen["instruction"] == 202
    events = [json.loads(line) for line in (run.path / "events.jsonl").read_text().splitlines()]
    assert [e["text"] for e in events if e["type"] == "instruction" and e["source"] == "http"] == ["Stop"]
    assert summary["steps"] == 40


def test_off_loopback_needs_a_token_and_every_request_carries_it(tmp_path):
    with pytest.raises(ValueError, match=r"http_host='0.0.0.0' is reachable from other machines and needs a token"):
        room_config(tmp_path, http_host="0.0.0.0")
    from flexrl.agent.instruction_http import InstructionServer

    server = InstructionServer(0, lambda arrival: None, host="0.0.0.0", token="s3cret")
    try:
        base = f"http://127.0.0.1:{server.address[1]}"
        status, reply = call(base, "/health")
        assert status == 401 and reply["error"].startswith("missing token; allowed: Authorization: Bearer")
        assert call(base, "/health", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(base, "/health", headers={"Authorization": "Bearer s3cret"}) == (200, {"status": "ok"})
        assert call(base, "/health?token=s3cret")[0] == 200
        status, reply = call(base, "/instruction", {"text": "Stop"}, {"Authorization": "Bearer s3cret", "Origin": "http://evil.example"})
        assert status == 403 and "only this app's own page may change state" in reply["error"]
    finally:
        server.close()
