"""Fixtures of the serve tests: `flexrl serve`'s real FastAPI application over a fake model (fake_engine.py)."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from fastapi.testclient import TestClient

from flexrl.llm.serving.config import ServeConfig
from flexrl.llm.serving.router import build_app
from flexrl.llm.serving.serving import OpenAIServing


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def make_client(fake_engine):
    """Factory: a TestClient of the real application over ``fake_engine`` with ServeConfig(**settings)."""
    clients = []

    def make(**settings) -> TestClient:
        config = ServeConfig(**settings)
        # the Host a local client sends (TestClient's default, "testserver", is refused on a loopback server)
        clients.append(TestClient(build_app(OpenAIServing(fake_engine, config), config), base_url="http://127.0.0.1:8000"))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> TestClient:
    """The application with the default limits."""
    return make_client()
