"""The shipped vLLM presets: they load, pass their own checks, and give the expected `vllm serve` command."""

import pytest

from flexrl.llm.launch_cli import launch_main
from flexrl.llm.vllm_presets import load_preset, preset_names


def test_every_shipped_preset_loads_and_fits():
    assert preset_names() == ["llama4-scout", "mistral-7b", "qwen2.5-7b"]
    for name in preset_names():
        preset = load_preset(name)
        preset.check(gpus=preset.tensor_parallel_size)
        assert preset.concurrent_full_sequences() >= 1


def test_command_carries_the_settings():
    cmd = load_preset("mistral-7b").command(port=9000)
    assert cmd[:3] == ["vllm", "serve", "mistralai/Mistral-7B-Instruct-v0.3"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags["--tensor-parallel-size"] == "2" and flags["--dtype"] == "bfloat16"
    assert flags["--port"] == "9000" and flags["--host"] == "127.0.0.1"
    assert flags["--tokenizer-mode"] == "mistral"


def test_weights_and_kv_arithmetic():
    qwen = load_preset("qwen2.5-7b")
    assert qwen.weights_gib_per_gpu() == pytest.approx(7.62e9 * 2 / 2**30 / 2)
    # keys and values, 28 layers, 4 KV heads of 128, 2 bytes, split over 2 ranks
    assert qwen.kv_gib_per_gpu(1) == pytest.approx(2 * 28 * 4 * 128 * 2 / 2 / 2**30)
    # beyond the KV head count, KV heads are replicated, not split further
    assert qwen.replace(tensor_parallel_size=4).kv_gib_per_gpu(1) == qwen.replace(tensor_parallel_size=8).kv_gib_per_gpu(1)


@pytest.mark.parametrize("changes, message", [
    ({"tensor_parallel_size": 3}, r"size 3 does not split Qwen/Qwen2.5-7B-Instruct's 28 attention / 4 key-value heads; allowed: 1, 2, 4"),
    ({"tensor_parallel_size": 1, "gpu_memory_gib": 16}, r"needs .* GiB per GPU .* raise tensor_parallel_size or lower max_model_len"),
    ({"dtype": "int3"}, r"dtype='int3'; allowed: bfloat16, float16, float32"),
    ({"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization=1.5; allowed: 0.1 to 0.98"),
    ({"max_model_len": 0}, r"max_model_len=0; must be >= 1"),
])
def test_bad_settings_fail_in_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        load_preset("qwen2.5-7b").replace(**changes).check()


def test_more_ranks_than_gpus_and_unknown_preset():
    with pytest.raises(ValueError, match="needs that many GPUs; 4 available"):
        load_preset("llama4-scout").check(gpus=4)
    with pytest.raises(ValueError, match="unknown; allowed: llama4-scout, mistral-7b, qwen2.5-7b"):
        load_preset("gpt-5")


def test_launch_cli_dry_runs(capsys, tmp_path):
    assert launch_main(["vllm", "llama4-scout", "--tp", "4", "--gpus", "4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vllm serve meta-llama/Llama-4-Scout-17B-16E-Instruct") and "--tensor-parallel-size 4" in out
    assert launch_main(["presets"]) == 0
    assert "qwen2.5-7b" in capsys.readouterr().out
    with pytest.raises(ValueError, match="pass the model after --"):
        launch_main(["tp", "--nproc", "2", "--dry-run"])
    (tmp_path / "config.json").write_text('{"num_attention_heads": 9, "num_key_value_heads": 3}')
    with pytest.raises(ValueError, match="size 2 does not split .* 9 attention / 3 key-value heads; allowed: 1, 3"):
        launch_main(["tp", "--nproc", "2", "--dry-run", "--", "--model", str(tmp_path), "hi"])
    assert launch_main(["tp", "--nproc", "3", "--dry-run", "--", "--model", str(tmp_path), "hi"]) == 0
    assert "torchrun --standalone --nproc-per-node=3 -m flexrl.llm.tensor_parallel --model" in capsys.readouterr().out
