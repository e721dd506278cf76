"""deploy/terraform: parses (python-hcl2), is formatted, takes no hard-coded project, and its provider-free
sizing module passes `terraform test` offline. The google provider itself cannot be downloaded here, so
`terraform validate`/`plan` of the root module are not run (docs/deployment.md says so)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

TF = Path(__file__).resolve().parents[2] / "deploy" / "terraform"


def _terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.skip("terraform not found: install the terraform binary")
    return found


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict]:
    hcl2 = pytest.importorskip("hcl2", reason="pip install python-hcl2 (the deploy extra)")
    return {p.name: hcl2.loads(p.read_text()) for p in TF.glob("*.tf")}


def _unquote(tree):
    """python-hcl2 (8.x) keeps the quotes of block labels: '"gpu"' -> 'gpu', at every level."""
    if isinstance(tree, dict):
        return {k.strip('"'): _unquote(v) for k, v in tree.items()}
    return tree


def _blocks(parsed: dict, kind: str) -> dict:
    return {name: _unquote(body) for doc in parsed.values() for block in doc.get(kind, [])
            for name, body in _unquote(block).items()}


def test_variables_are_documented_and_the_project_has_no_default(parsed):
    variables = _blocks(parsed, "variable")
    assert {"project_id", "region", "zone", "gpu_type", "gpus_per_node", "gpu_max_nodes", "spot"} <= set(variables)
    assert all(v.get("description") for v in variables.values())
    assert "default" not in variables["project_id"] and variables["project_id"].get("validation")
    assert not re.search(r'project\s*=\s*"', "".join(p.read_text() for p in TF.rglob("*.tf")))


def test_gpu_pool_scales_to_zero_on_tainted_spot_nodes(parsed):
    gpu = _blocks(parsed, "resource")["google_container_node_pool"]["gpu"]
    text = str(gpu)
    assert "'min_node_count': 0" in text and "var.spot" in text and "nvidia.com/gpu" in text and "NO_SCHEDULE" in text
    assert "var.gpus_per_node" in text and "var.gpu_type" in text


def test_outputs_the_makefile_reads(parsed):
    outputs = set(_blocks(parsed, "output"))
    makefile = (TF.parents[1] / "Makefile").read_text()
    used = set(re.findall(r"output -raw (\w+)", makefile))
    assert used and used <= outputs


def test_formatted():
    r = subprocess.run([_terraform(), "fmt", "-check", "-recursive", str(TF)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"not formatted: {r.stdout}"


def test_sizing_module(tmp_path):
    work = tmp_path / "sizing"
    shutil.copytree(TF / "modules" / "sizing", work)  # init writes .terraform/: not into the repository
    tf = _terraform()
    subprocess.run([tf, f"-chdir={work}", "init", "-backend=false", "-input=false"], check=True, capture_output=True,
                   timeout=60)
    r = subprocess.run([tf, f"-chdir={work}", "test", "-no-color"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "4 passed, 0 failed" in r.stdout, r.stdout + r.stderr
