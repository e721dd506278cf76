"""flexrl k8s: --dry-run prints the objects built with the kubernetes client; sweeps round-trip index -> overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("kubernetes", reason="the k8s extra (pip install 'flexrl[k8s]') is not installed")

from flexrl.cli import main as flexrl_main  # noqa: E402
from flexrl.config.sweep_expand import expand_sweep  # noqa: E402
from flexrl.deploy import k8s_cli  # noqa: E402
from flexrl.deploy.k8s_cli import k8s_main  # noqa: E402

DEPLOY_K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def _dry_run(capsys, *argv: str) -> list[dict]:
    assert k8s_main(["submit", *argv, "--dry-run"], flexrl_main) == 0
    return list(yaml.safe_load_all(capsys.readouterr().out))


def _container(obj: dict) -> dict:
    (c,) = obj["spec"]["template"]["spec"]["containers"]
    return c


def test_train_job(capsys):
    (job,) = _dry_run(capsys, "train", "--name", "t1", "skill=avoid", "experiment=quick")
    assert job["kind"] == "Job" and job["metadata"] == {
        "labels": {"app.kubernetes.io/name": "t1", "app.kubernetes.io/part-of": "flexrl",
                   "app.kubernetes.io/component": "train"}, "name": "t1", "namespace": "flexrl"}
    c = _container(job)
    assert c["args"] == ["train", "skill=avoid", "experiment=quick", "experiment.workspace=/workspace",
                         "tracking.progress=false"]
    assert c["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert c["resources"]["limits"] == c["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "flexrl-workspace"
    assert "tolerations" not in job["spec"]["template"]["spec"]  # no GPU, no GPU taint tolerated


def test_train_job_on_gpus_in_a_kueue_queue(capsys):
    (job,) = _dry_run(capsys, "train", "--name", "t2", "--gpus", "1", "--queue", "flexrl",
                      "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4")
    pod = job["spec"]["template"]["spec"]
    assert _container(job)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "flexrl" and job["spec"]["suspend"] is True


def test_sweep_is_one_indexed_job_whose_index_selects_hydras_trial(capsys):
    config_map, job = _dry_run(capsys, "sweep", "--name", "s1", "--parallelism", "3", "experiment=sweep_ppo")
    trials = expand_sweep("train", ["experiment=sweep_ppo"])
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == len(trials) == 12
    assert spec["parallelism"] == 3 and spec["backoffLimitPerIndex"] == 1
    for i, trial in enumerate(trials):  # index -> overrides round-trips through the ConfigMap
        assert config_map["data"][str(i)].splitlines() == [*trial, "experiment.workspace=/workspace",
                                                           "tracking.progress=false"]
    args = _container(job)["args"]
    assert args[:4] == ["k8s", "trial", "--trials", "/etc/flexrl/trials"]
    run_root = args[args.index("--run-root") + 1]
    assert run_root.startswith("/workspace/sweep_ppo/sweep-")  # trials land as <experiment>/sweep-<time>/<n>
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["trials"]["configMap"]["name"] == config_map["metadata"]["name"] == "s1-trials"


def test_vllm_serving_uses_every_gpu_of_the_pod_for_tensor_parallelism(capsys):
    deployment, service = _dry_run(capsys, "serve", "--name", "llm", "--backend", "vllm", "--gpus", "4",
                                   "--model", "org/model", "--gpu-node-selector", "pool=gpu",
                                   "--gpu-toleration", "nvidia.com/gpu=present")
    c = _container(deployment)
    assert c["command"] == ["vllm", "serve"] and c["args"][0] == "org/model"
    assert c["args"][c["args"].index("--tensor-parallel-size") + 1] == c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Equal",
                                   "value": "present"}]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert c["env"][0]["valueFrom"]["secretKeyRef"] == {"key": "api-key", "name": "flexrl-serve"}


def test_flexrl_serving_on_cpu(capsys):
    deployment, _ = _dry_run(capsys, "serve", "--name", "llm")
    c = _container(deployment)
    assert c["image"] == "localhost/flexrl-serve:0.1.0" and c["args"] == ["--threads", "2"]
    assert c["env"][0]["name"] == "FLEXRL_SERVE_API_KEY" and "nvidia.com/gpu" not in c["resources"]["limits"]


@pytest.mark.parametrize("argv, says", [
    (["submit", "train", "--dry-run", "ppo.lrr=1"], "unknown key 'ppo.lrr'"),
    (["submit", "train", "--dry-run", "ppo.gamma=0.9,0.99"], "belong to submit sweep"),
    (["submit", "sweep", "--dry-run", "experiment=tune_ppo"], "only the basic sweeper"),
    (["submit", "train", "--dry-run", "--name", "Bad_Name"], "lower-case letters"),
    (["submit", "serve", "--dry-run", "--backend", "vllm", "--model", "m"], "at least one GPU"),
    (["submit", "train", "--dry-run", "--node-selector", "novalue"], "expected KEY=VALUE"),
])
def test_bad_input_is_one_line(capsys, argv, says):
    assert k8s_main(argv, flexrl_main) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_status_without_a_cluster_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert k8s_main(["status"], flexrl_main) == 2
    err = capsys.readouterr().err
    assert err.startswith("flexrl k8s: no Kubernetes cluster") and err.count("\n") == 1


def test_trial_runs_the_overrides_of_its_completion_index(monkeypatch, tmp_path):
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "1").write_text("ppo.gamma=0.9\nexperiment=quick\n")
    calls = []
    record = lambda argv: calls.append(argv) or 0  # noqa: E731
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert k8s_main(["trial", "--trials", str(tmp_path / "trials"), "--run-root", "/workspace/x/sweep-1"], record) == 0
    assert calls == [["train", "ppo.gamma=0.9", "experiment=quick", "hydra.run.dir=/workspace/x/sweep-1/1"]]
    assert k8s_main(["trial", "--trials", str(tmp_path / "trials"), "--run-root", "r", "--index", "7"], record) == 2


def test_committed_workloads_are_the_builders_output():
    """deploy/k8s holds generated YAML: it must equal what `flexrl k8s render deploy/k8s` writes now."""
    for path, text in k8s_cli.render(DEPLOY_K8S).items():
        assert path.read_text() == text, f"{path} is stale: run flexrl k8s render deploy/k8s"


def test_vllm_preset_fills_model_gpus_and_memory_flags(capsys):
    deployment, _ = _dry_run(capsys, "serve", "--name", "qwen", "--backend", "vllm", "--preset", "qwen2.5-7b")
    c = _container(deployment)
    assert c["args"][0] == "Qwen/Qwen2.5-7B-Instruct"
    flags = dict(zip(c["args"][1::2], c["args"][2::2]))
    assert flags["--tensor-parallel-size"] == c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert flags["--served-model-name"] == "qwen2.5-7b" and flags["--max-model-len"] == "32768"
    assert flags["--dtype"] == "bfloat16" and flags["--gpu-memory-utilization"] == "0.9"


def test_vllm_preset_is_checked_before_any_object(capsys):
    from flexrl.deploy.k8s_cli import k8s_main

    assert k8s_main(["submit", "serve", "--dry-run", "--backend", "vllm", "--preset", "qwen2.5-7b", "--gpus", "3"], flexrl_main) == 2
    assert "size 3 does not split Qwen/Qwen2.5-7B-Instruct's 28 attention / 4 key-value heads" in capsys.readouterr().err
