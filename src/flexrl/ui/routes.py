"""The control room's routes, added to a run's app (:func:`flexrl.agent.instruction_http.build_app`).

``GET /`` the page; ``/static/*`` its script and style (from the package: no CDN, works offline);
``GET /stream.mjpg`` the live view (MJPEG); ``GET /frame.jpg`` the latest frame; ``GET /api/state``
the episode, its decisions (``?since=N``: only newer ones) and rates; ``GET /api/options`` the config
groups' choices; ``POST /api/control`` start, pause, resume, reset or re-seed (``flexrl ui`` only; a run
started from the command line answers 409); ``GET /api/runs``, ``/api/run?path=``,
``/api/run/file?path=&name=`` the runs browser. Instructions go to ``POST /instruction``, as ever.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from flexrl.agent.instruction_http import BodyError, read_body
from flexrl.ui import runs as runs_api
from flexrl.ui.live import LiveView
from flexrl.ui.session import ACTIONS, LiveSession, group_options
from flexrl.web.guard import TOKEN_COOKIE, request_token

STATIC = ("app.js", "style.css")
STREAM_FPS = 30
BOUNDARY = "frame"


class ControlRequest(BaseModel):
    """The JSON body of ``POST /api/control``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: str
    seed: Optional[int] = None
    planner: Optional[str] = None
    llm: Optional[str] = None
    robot: Optional[str] = None
    env: Optional[str] = None


def _error(status: int, why: str) -> JSONResponse:
    return JSONResponse({"accepted": False, "error": " ".join(why.split())}, status)


def add_ui_routes(app: FastAPI, view: LiveView, workspace: str | Path, session: LiveSession | None = None) -> None:
    """Add the page and its API to ``app``; ``session`` None: a command-line run (no controls)."""
    static = resources.files("flexrl.ui") / "static"

    @app.get("/")
    async def page(request: Request) -> HTMLResponse:
        response = HTMLResponse((static / "index.html").read_text(encoding="utf-8"))
        token = request.query_params.get("token")
        if token and request_token(request.scope, request.headers) == token:  # the guard checked it
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/static/{name}")
    async def asset(name: str) -> Response:
        if name not in STATIC:
            return _error(404, f"no file {name[:40]!r}; allowed: {', '.join(STATIC)}")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return Response((static / name).read_text(encoding="utf-8"), media_type=media)

    @app.get("/api/state")
    async def state(since: int = 0) -> dict:
        return view.snapshot(since)

    @app.get("/api/options")
    async def options() -> dict:
        return {"groups": group_options(), "choices": session.choices if session else None,
                "seed": session.seed if session else None, "controls": session is not None, "actions": list(ACTIONS)}

    @app.get("/frame.jpg")
    async def frame() -> Response:
        no, data = await run_in_threadpool(view.jpeg)
        if not data:
            return _error(404, "no frame yet; allowed: once the episode renders")
        return Response(data, media_type="image/jpeg", headers={"X-Frame": str(no), "Cache-Control": "no-store"})

    @app.get("/stream.mjpg")
    async def stream(request: Request) -> StreamingResponse:
        async def frames():
            view.viewers += 1
            try:
                last, period = 0, 1.0 / STREAM_FPS
                while not await request.is_disconnected():
                    if view.frame_no != last:
                        no, data = await run_in_threadpool(view.jpeg)
                        if data and no != last:
                            last = no
                            yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                                   f"X-Frame: {no}\r\n\r\n").encode() + data + b"\r\n"
                    await asyncio.sleep(period)
            finally:
                view.viewers -= 1

        return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                 headers={"Cache-Control": "no-store"})

    @app.post("/api/control")
    async def control(request: Request) -> JSONResponse:
        if session is None:
            return _error(409, "this run was started from the command line: it has no controls; allowed: "
                               "POST /instruction, or start the control room with `flexrl ui`")
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if media != "application/json":
            return _error(415, f"Content-Type {media[:40]!r}; allowed: application/json")
        try:
            body = await read_body(request)
            command = ControlRequest.model_validate_json(body)
            settings = {k: v for k, v in command.model_dump().items() if k not in ("action", "seed") and v is not None}
            return JSONResponse({"accepted": True, **session.control(command.action, command.seed, **settings)}, 202)
        except BodyError as err:
            return _error(err.status, str(err))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, f"{where}: {first['msg']}; expected {{\"action\": one of {', '.join(ACTIONS)}, "
                               "\"seed\": int, \"planner\"/\"llm\"/\"robot\"/\"env\": a choice of /api/options}")
        except ValueError as err:
            return _error(400, str(err))

    @app.get("/api/runs")
    async def runs() -> list:
        return await run_in_threadpool(runs_api.list_runs, workspace)

    @app.get("/api/run")
    async def run(path: str) -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(runs_api.run_detail, workspace, path))
        except ValueError as err:
            return _error(404, str(err))

    @app.get("/api/run/file")
    async def run_file(path: str, name: str) -> Response:
        try:
            file, media = runs_api.run_file(workspace, path, name)
        except ValueError as err:
            return _error(404, str(err))
        return FileResponse(file, media_type=media)
