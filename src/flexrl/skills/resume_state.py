"""The resumable state of a training run: SB3's full zip (weights, optimiser, step counter), signed.

``checkpoints/last.json`` is the commit point. A save writes ``last-<steps>.zip`` atomically, then
``last.json`` (atomically) naming that zip with its SHA-256 and the user's HMAC of run id, name and hash
(:mod:`flexrl.runs.signing`), then deletes older zips. A run killed at any moment therefore has a
``last.json`` that names a whole zip. Loading an SB3 zip unpickles code, so :func:`load_resume_state`
accepts only a zip whose hash and signature match what this user recorded when saving this run, and
hands back the very bytes it checked (no second read a swapped file could slip into).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from flexrl.runs.atomic import atomic_write, remove_temporaries, write_json
from flexrl.runs.signing import sign, verify
from flexrl.skills.checkpoint import CheckpointError

LAST = "last"
_ZIP = re.compile(r"last-\d{10}\.zip")


def _payload(run_id: str, name: str, digest: str) -> str:
    return json.dumps([run_id, name, digest])


def save_resume_state(model, directory: str | Path, key: str | Path, run_id: str, info: dict[str, Any]) -> Path:
    """Save ``model`` (an SB3 PPO) so that :func:`load_resume_state` takes it back; returns the zip's path.

    Args:
        model: the PPO model.
        directory: the run's ``checkpoints`` directory.
        key: the signing key file (:func:`flexrl.runs.signing.default_key_path`).
        run_id: the run's id, bound into the signature so a zip cannot move between runs.
        info: state saved beside it (wall seconds, last evaluation, settings).
    """
    directory = Path(directory)
    steps = int(model.num_timesteps)
    name = f"{LAST}-{steps:010d}.zip"
    path = atomic_write(directory / name, model.save, suffix=".zip")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    write_json(directory / f"{LAST}.json", {"file": name, "sha256": digest, "hmac": sign(key, _payload(run_id, name, digest)),
                                            "steps": steps, **info})
    for old in directory.glob(f"{LAST}-*.zip"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


def load_resume_state(directory: str | Path, key: str | Path, run_id: str) -> tuple[bytes, dict[str, Any]] | None:
    """The checked bytes of the zip ``last.json`` names, and the state saved with it; None before any save.

    Also removes what a killed save left behind: atomic-write temporaries and zips ``last.json`` does not name.

    Raises:
        CheckpointError: one line naming the file that is malformed, missing, changed or not signed here.
    """
    directory = Path(directory)
    index = directory / f"{LAST}.json"
    remove_temporaries(directory)
    if not index.is_file():
        if any(directory.glob("*.zip")):
            raise CheckpointError(f"{directory} holds zips but no {LAST}.json: they were not saved by this flexrl "
                                  "and would run pickled code; start a new run (parent= takes a weights-only policy)")
        return None
    try:
        state = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{index} is not valid JSON ({str(err).splitlines()[0]}); "
                              "the run cannot be resumed from it") from None
    if not isinstance(state, dict) or not isinstance(state.get("file"), str) or not _ZIP.fullmatch(state["file"]):
        raise CheckpointError(f"{index} does not name a checkpoint of the form last-<steps>.zip (an older flexrl "
                              "wrote it?); start a new run, or fine-tune from a final policy with parent=")
    path = directory / state["file"]
    if not path.is_file():
        raise CheckpointError(f"{path}, named by {index}, is missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != state.get("sha256"):
        raise CheckpointError(f"{path} does not match the SHA-256 recorded in {index} when it was saved "
                              "(truncated or replaced); it is not loaded")
    if not verify(key, _payload(run_id, state["file"], digest), state.get("hmac")):
        raise CheckpointError(f"{path} was not saved by flexrl for this run and user (its signature does not match "
                              f"the key {key}); an SB3 zip runs pickled code, so flexrl resumes only its own. Take its "
                              f"weights into a new run instead: flexrl convert {path} --name <family> --out "
                              "DIR/checkpoints, then flexrl train parent=DIR")
    for other in directory.glob(f"{LAST}-*.zip"):
        if other.name != path.name:
            other.unlink(missing_ok=True)
    return data, state
