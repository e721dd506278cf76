import io

import numpy as np
from PIL import Image

from flexrl.planners.base import Decision, Instruction, PlanContext
from flexrl.skills.library import SkillCall
from flexrl.ui.live import LiveView, Pacer, decision_record


def test_the_latest_frame_is_encoded_once_as_jpeg():
    view = LiveView()
    assert view.jpeg() == (0, b"")
    frame = np.zeros((360, 480, 3), dtype=np.uint8)
    frame[:, :240] = 255
    view.on_frame(frame)
    no, data = view.jpeg()
    assert no == 1 and Image.open(io.BytesIO(data)).size == (480, 360)
    assert view.jpeg()[1] is data  # the same bytes for every viewer until a new frame comes
    view.on_frame(frame[:, ::-1].copy())
    assert view.jpeg()[0] == 2 and view.jpeg()[1] != data


def test_decisions_are_numbered_and_read_since_a_number():
    view = LiveView()
    calls = (SkillCall("stop"), SkillCall("go_to", ("ball",)))
    context = PlanContext(None, "obs", (Instruction("Go to the ball", "go_to(ball)"),), calls)
    for _ in range(3):
        view.on_decision(4, context, Decision(calls[1], {"stop": -3.0, "go_to(ball)": -0.1}, 12.3, "llm"))
    snap = view.snapshot(since=1)
    assert [d["n"] for d in snap["decisions"]] == [2, 3]
    record = snap["decisions"][0]
    assert record["call"] == "go_to(ball)" and record["scores"] == {"stop": -3.0, "go_to(ball)": -0.1}
    assert record["instruction"] == "Go to the ball" and record["latency_ms"] == 12.3
    view.new_episode(status="running")
    assert view.snapshot()["decisions"] == [] and view.snapshot()["episode"] == 1


def test_a_decision_without_scores_lists_every_candidate():
    calls = (SkillCall("stop"), SkillCall("done"))
    record = decision_record(0, PlanContext(None, "obs", (), calls), Decision(calls[0], {}, 0.1, "oracle"))
    assert record["scores"] == {"stop": None, "done": None} and record["instruction"] is None


def test_the_pacer_holds_real_time_and_catches_up_a_little(monkeypatch):
    clock = [0.0]
    slept = []
    monkeypatch.setattr("time.perf_counter", lambda: clock[0])
    monkeypatch.setattr("time.sleep", lambda s: (slept.append(s), clock.__setitem__(0, clock[0] + s)))
    pacer = Pacer(20)
    pacer.tick()
    assert slept == [0.05]
    clock[0] += 2.0  # a 2 s stall (a slow decision): no sleep, and the backlog is cut to 0.5 s
    pacer.tick()
    assert len(slept) == 1
    caught_up = 0
    while not slept[1:]:
        pacer.tick()
        caught_up += 1
    assert 9 <= caught_up <= 11  # 0.5 s of steps at 20/s run unslept, then the pace holds again
