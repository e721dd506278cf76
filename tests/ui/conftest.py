"""The control room under test: a real server on 127.0.0.1 running real episodes (oracle planner)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from flexrl.agent.runner import AgentConfig
from flexrl.agent.session import RunConfig
from flexrl.planners.config import PlannerConfig
from flexrl.runs.config import ExperimentConfig


def room_config(workspace, planner: str = "oracle", **kw) -> RunConfig:
    return RunConfig(planner=PlannerConfig(name=planner), http_port=0, schedule=[],
                     experiment=ExperimentConfig(name="ui", workspace=str(workspace)),
                     agent=AgentConfig(max_steps=kw.pop("max_steps", 6000), record_video=False), **kw)


def call(base: str, path: str, body: dict | bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON) of GET (no body) or POST (a dict is sent as JSON) to the control room."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(base.rstrip("/") + path, data=data,
                                     headers={"Content-Type": "application/json", **(headers or {})} if data is not None else headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; that value, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s")


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    from flexrl.ui.app import ControlRoom

    workspace = tmp_path_factory.mktemp("ui-workspace")
    room = ControlRoom(room_config(workspace))
    room.workspace = workspace
    wait_for(lambda: call(room.url, "/api/state")[1]["status"] == "running" and room.view.frame_no > 2)
    yield room
    room.close()
