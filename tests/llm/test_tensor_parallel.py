"""Tensor-parallel inference for real: torchrun, two ranks over gloo on CPU, transformers' tp_plan."""

import json
import subprocess
import sys

import pytest

from flexrl.llm.tensor_parallel import allowed_sizes, check_tp_size, head_counts, main, torchrun_command

OPTIONS = [" avoid(ball)", " go_to(ball)", " stop"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small random Llama (4 heads, 2 key-value heads) with the embedded model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from flexrl.llm.embedded import embedded_gguf_path

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_head_counts_and_allowed_sizes(tiny_model, tmp_path):
    assert head_counts(tiny_model) == (4, 2)
    assert allowed_sizes(28, 4) == [1, 2, 4]
    assert allowed_sizes(40, 8) == [1, 2, 4, 8]
    check_tp_size(2, 4, 2, "tiny")
    with pytest.raises(ValueError, match=r"size 3 does not split tiny's 4 attention / 2 key-value heads; allowed: 1, 2"):
        check_tp_size(3, 4, 2, "tiny")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        head_counts(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"num_attention_heads": 40, "num_key_value_heads": 8}}))
    assert head_counts(tmp_path) == (40, 8)  # multimodal configs (Llama 4) nest the language model's


def test_torchrun_command_and_worker_outside_torchrun(capsys):
    assert torchrun_command(2, ["--model", "m"]) == [
        "torchrun", "--standalone", "--nproc-per-node=2", "-m", "flexrl.llm.tensor_parallel", "--model", "m"]
    with pytest.raises(ValueError, match="--nproc 0"):
        torchrun_command(0, [])
    assert main(["--model", "m", "hi"]) == 2
    assert "run under torchrun" in capsys.readouterr().err


@pytest.mark.slow
def test_two_ranks_score_like_one_process_with_half_the_weights_each(tiny_model, tmp_path):
    from flexrl.llm.infer import infer
    from flexrl.llm.transformers_backend import TransformersBackend

    out = tmp_path / "tp.json"
    worker = ["--model", str(tiny_model), "--dtype", "float32", "Avoid the ball!", *(a for o in OPTIONS for a in ("--option", o)),
              "--out", str(out)]
    command = torchrun_command(2, worker)
    command[0:1] = [sys.executable, "-m", "torch.distributed.run"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["world_size"] == 2
    assert 0.45 < report["local_parameter_fraction"] < 0.6  # every rank holds about half of the model

    single = infer(TransformersBackend(str(tiny_model), cpu_weights="float32"), "Avoid the ball!", "", OPTIONS)
    assert [s[0] for s in report["scores"]] == OPTIONS
    assert [s[1] for s in report["scores"]] == pytest.approx([s[1] for s in single.scores], abs=1e-3)
    assert report["best"] == single.best
