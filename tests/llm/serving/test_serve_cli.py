"""The `flexrl serve` command line: its name in --help, and bad settings as one line with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from flexrl.llm.serving.cli import main, parse_args


def test_help_says_flexrl_serve_through_both_entry_points():
    for command in (["-m", "flexrl.cli", "serve", "--help"], ["-m", "flexrl.llm.server", "--help"]):
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith("usage: flexrl serve ")
        assert "--max-request-tokens" in done.stdout and "--slice-tokens" in done.stdout
        assert "python -m" not in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "tpu9", ""])
def test_an_unavailable_device_is_one_line_and_exit_2(device, capsys):
    assert main(["--device", device, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == f"flexrl serve: device={device!r} is not a device this machine has; allowed: auto, cpu\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "reachable from other machines: set an API key"),
    (["--max-prompt-tokens", "0"], "max_prompt_tokens=0; allowed: a positive integer"),
    (["--slice-tokens", "4"], "slice_tokens=4; allowed: 16 or more"),
    (["--port", "70000"], "port=70000; allowed: 0 to 65535"),
])
def test_bad_settings_are_one_line_and_exit_2(args, message, capsys, monkeypatch):
    monkeypatch.delenv("FLEXRL_SERVE_API_KEY", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_flags_reach_the_config():
    config = parse_args(["--max-request-tokens", "999", "--slice-tokens", "64", "--decode-steps", "4", "--device", "cpu",
                         "--batch-wait-ms", "2.5", "--served-model-name", "m"])
    assert (config.max_request_tokens, config.slice_tokens, config.decode_steps, config.device) == (999, 64, 4, "cpu")
    assert config.batch_wait_ms == 2.5 and config.served_model_name == "m"
    assert parse_args([]).device == "auto"


def test_a_log_level_uvicorn_does_not_know_is_refused_before_the_model_loads(capsys):
    from uvicorn.config import LOG_LEVELS as UVICORN_LOG_LEVELS

    from flexrl.llm.serving.config import LOG_LEVELS, ServeConfig

    assert set(LOG_LEVELS) == set(UVICORN_LOG_LEVELS)  # every level offered is one uvicorn takes
    with pytest.raises(ValueError, match="--log-level: invalid choice: 'verbose'.*see `flexrl serve --help`"):
        parse_args(["--log-level", "verbose"])
    with pytest.raises(ValueError, match=r"^log_level='verbose'; allowed: critical, error, warning, info, debug, trace$"):
        ServeConfig(log_level="verbose")
    assert parse_args(["--log-level", "debug"]).log_level == "debug"


@pytest.mark.parametrize("port", [-1, 65536, True, 1.5])
def test_the_port_is_checked_by_the_shared_check(port):
    from flexrl.llm.serving.config import ServeConfig

    with pytest.raises(ValueError, match=r"^port=.*; allowed: 0 to 65535 \(0: any free port\)$"):
        ServeConfig(port=port)


def test_a_busy_port_is_one_line_before_the_model_loads(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port), "--model", "/nonexistent/never/loaded"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"flexrl serve: cannot listen on 127.0.0.1:{port}: Address already in use; "
                   "choose another --port, or 0 for any free port")
