"""The page in a real browser: Debian's chromium, driven by Playwright (``make test`` installs both).

Screenshots go to ``$FLEXRL_TEST_ARTIFACTS`` (default: the test's temporary directory).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import call, room_config, wait_for
from flexrl.agent.runner import AgentConfig
from flexrl.agent.session import run_agent

CHROMIUM = shutil.which("chromium") or "/usr/lib/chromium/chromium"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("FLEXRL_TEST_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser, room):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(room.url)
    yield page
    page.close()


def _frame(page) -> int:
    return int(page.get_attribute("#view", "data-frame") or 0)


def test_the_page_loads_without_errors_and_frames_advance(page, shots):
    page.wait_for_function("document.getElementById('view').naturalWidth === 480")
    first = wait_for(lambda: _frame(page), timeout=10)
    wait_for(lambda: _frame(page) > first + 10, timeout=10)
    before = page.locator("#view").screenshot()
    page.wait_for_timeout(700)
    assert page.locator("#view").screenshot() != before  # the image itself changes, not only a counter
    assert page.locator("#status").inner_text() == "running"
    page.screenshot(path=str(shots / "control-room-live.png"))
    assert page.errors == []


def test_typing_avoid_the_ball_shows_the_skill_and_its_scores(page, room, shots):
    page.fill("#instruction", "Avoid the ball!")
    page.fill("#intent", "avoid(ball)")  # the oracle reads the intent; the LLM reads the words (the slow test)
    page.click("#instruct button[type=submit]")
    page.wait_for_function("document.getElementById('now-skill').textContent === 'avoid(ball)'", timeout=5000)
    page.wait_for_function("document.getElementById('d-call').textContent === 'avoid(ball)'", timeout=5000)
    candidates = page.locator("#chart .candidate").all_inner_texts()
    state = call(room.url, "/api/state")[1]
    assert len(candidates) == len(room.view.snapshot()["decisions"][-1]["scores"]) >= 20
    assert page.locator("#chart .candidate.chosen").get_attribute("data-call") == "avoid(ball)"
    assert "at least 0.80 m from the ball" in page.locator("#now-criterion").inner_text()
    assert state["skill"] == "avoid(ball)"
    page.screenshot(path=str(shots / "control-room-avoid.png"))
    assert page.errors == []


def test_pause_and_reset_from_the_page(page, room):
    page.click("#btn-pause")
    page.wait_for_function("document.getElementById('status').textContent === 'paused'", timeout=5000)
    step = page.locator("#step").inner_text()
    page.wait_for_timeout(600)
    assert page.locator("#step").inner_text() == step
    page.click("#btn-pause")  # now "Resume"
    page.wait_for_function("document.getElementById('status').textContent === 'running'", timeout=5000)
    episode = room.view.snapshot()["episode"]
    page.select_option("#opt-env", "still")
    page.fill("#opt-seed", "7")
    page.click("#btn-reset")
    wait_for(lambda: room.view.snapshot()["episode"] > episode and room.view.snapshot()["status"] == "running", timeout=30)
    snap = room.view.snapshot()
    assert snap["seed"] == 7 and snap["choices"]["env"] == "still"
    page.wait_for_function("document.getElementById('seed').textContent === '7'", timeout=5000)
    assert page.errors == []


def test_a_run_from_the_workspace_plays_its_video(page, room, shots):
    cfg = room_config(room.workspace, max_steps=30)
    cfg.agent = AgentConfig(max_steps=30, record_video=True)
    cfg.experiment.name = "demo"
    run, _ = run_agent(cfg)
    page.click("#tab-runs")
    assert page.locator("#runs").is_visible() and not page.locator("#live").is_visible()
    row = page.locator(f"tr[data-path='demo/{run.path.name}']")
    row.wait_for(timeout=10000)
    row.click()
    video = page.locator("video.run-video")
    video.wait_for(timeout=10000)
    page.wait_for_function("document.querySelector('video.run-video').readyState >= 2", timeout=15000)
    page.evaluate("document.querySelector('video.run-video').play()")
    page.wait_for_function("document.querySelector('video.run-video').currentTime > 0.3", timeout=15000)
    assert page.evaluate("document.querySelector('video.run-video').videoWidth") == 320
    page.screenshot(path=str(shots / "control-room-runs.png"))
    assert page.errors == []


@pytest.mark.slow
def test_the_embedded_llm_reads_a_typed_instruction(browser, tmp_path, shots):
    from flexrl.ui.app import ControlRoom

    from flexrl.ui.session import load_group

    room = ControlRoom(room_config(tmp_path, planner="llm", llm=load_group("llm", "embedded")))  # the shipped planner
    try:
        wait_for(lambda: room.view.snapshot()["status"] == "running" and room.view.frame_no > 2, timeout=180)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(room.url)
        page.fill("#instruction", "Avoid the ball!")  # words only: the LLM decides
        page.click("#instruct button[type=submit]")
        page.wait_for_function("document.getElementById('now-skill').textContent === 'avoid(ball)'", timeout=10000)
        page.wait_for_function("document.getElementById('d-instruction').textContent === 'Avoid the ball!'", timeout=5000)
        decision = [d for d in room.view.snapshot()["decisions"] if d["instruction"] == "Avoid the ball!"][-1]
        assert decision["planner"] != "oracle" and decision["call"] == "avoid(ball)"
        scores = [s for s in decision["scores"].values() if s is not None]
        assert len(scores) == page.locator("#chart .candidate").count() and max(scores) == decision["scores"]["avoid(ball)"]
        page.screenshot(path=str(shots / "control-room-llm.png"))
        assert errors == []
        page.close()
    finally:
        room.close()
