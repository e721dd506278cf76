"""Test-wide setup: never let transformers or huggingface_hub reach the network."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MUJOCO_GL", "egl")
# Resume checkpoints are signed with a per-user key; the tests use their own, not the user's.
os.environ["FLEXRL_SIGNING_KEY"] = os.path.join(tempfile.mkdtemp(prefix="flexrl-tests-"), "checkpoint.key")

