"""Which files flexrl wrote itself: an HMAC over their hash, keyed by a secret that stays in the workspace.

Resuming a training run loads SB3's full zip (it holds the optimiser), and loading an SB3 zip unpickles
code. flexrl therefore resumes only from a zip it saved: at save time it records the zip's SHA-256 and an
HMAC of it under ``<workspace>/.flexrl/checkpoint.key`` (created once, mode 0600). A run directory copied
in from elsewhere, or a zip swapped after the fact, fails the check, because the key never travels with a
run directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY = Path(".flexrl") / "checkpoint.key"


def _key(workspace: str | Path, create: bool) -> bytes | None:
    path = Path(workspace) / KEY
    if not path.is_file():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def sign(workspace: str | Path, payload: str) -> str:
    """The hex HMAC-SHA256 of ``payload`` under the workspace's key (made on first use)."""
    return hmac.new(_key(workspace, create=True), payload.encode(), hashlib.sha256).hexdigest()


def verify(workspace: str | Path, payload: str, signature: object) -> bool:
    """Whether ``signature`` is this workspace's HMAC of ``payload`` (False without a key)."""
    key = _key(workspace, create=False)
    if key is None or not isinstance(signature, str):
        return False
    return hmac.compare_digest(hmac.new(key, payload.encode(), hashlib.sha256).hexdigest(), signature)
