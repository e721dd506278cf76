"""A bounded load test on 127.0.0.1: viewers on the stream and 200 instruction posts while a run goes on."""

import json
import threading
import urllib.request

from conftest import call, room_config
from flexrl.agent.session import run_agent

VIEWERS, POSTERS, POSTS_EACH = 4, 4, 50


def test_viewers_and_200_posts_during_a_run_lose_nothing(tmp_path):
    urls, answers, frames, errors = [], [], [], []
    started = threading.Event()

    def view(base):
        try:
            with urllib.request.urlopen(base + "stream.mjpg", timeout=20) as stream:
                data = b""
                while data.count(b"--frame\r\n") < 40:
                    data += stream.read1(65536)
                frames.append(data.count(b"--frame\r\n"))
        except Exception as err:  # noqa: BLE001 (collected and asserted on below)
            errors.append(repr(err))

    def post(base, k):
        for i in range(POSTS_EACH):
            answers.append(call(base, "/instruction", {"text": f"Stop number {k * POSTS_EACH + i}"})[0])

    threads = []

    def begin(step):
        if step == 3 and not started.is_set():
            started.set()
            base = urls[1]
            threads.extend(threading.Thread(target=view, args=(base,)) for _ in range(VIEWERS))
            threads.extend(threading.Thread(target=post, args=(base, k)) for k in range(POSTERS))
            for t in threads:
                t.start()

    run, summary = run_agent(room_config(tmp_path, ui=True, max_steps=200), on_step=begin, on_serving=urls.append)
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and frames == [40] * VIEWERS
    assert answers == [202] * (POSTERS * POSTS_EACH)
    assert summary["steps"] == 200 and json.loads((run.path / "meta.json").read_text())["status"] == "finished"
    events = [json.loads(line) for line in (run.path / "events.jsonl").read_text().splitlines()]
    texts = {e["text"] for e in events if e["type"] == "instruction" and e["source"] == "http"}
    assert texts == {f"Stop number {n}" for n in range(POSTERS * POSTS_EACH)}  # every post reached the run
