"""The flexrl command: help lists every sub-command; unknown commands and bad input are one line."""

from __future__ import annotations

import pytest

from flexrl.cli import COMMANDS, main


def test_help_lists_every_sub_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "run", "eval", "bench", "runs", "serve", "infer"):
        assert name in COMMANDS and f"  {name}" in out


def test_unknown_command_is_one_line(capsys):
    assert main(["fly"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "flexrl fly: unknown command 'fly'; allowed: " + ", ".join(COMMANDS)


@pytest.mark.slow
def test_infer_scores_options_with_the_embedded_model(capsys):
    assert main(["infer", "Avoid the ball!", "--system", "Pick a skill.", "--option", "avoid(ball)",
                 "--option", "go_to(ball)"]) == 0
    out = capsys.readouterr().out
    assert "best: " in out and "logprob" in out
    assert main(["infer", "x", "--option", "a", "--option", "a"]) == 2
    assert "options must be distinct" in capsys.readouterr().err


def test_openai_compat_config_errors_are_one_line(capsys, tmp_path):
    assert main(["run", "llm=openai_compat", "llm.base_url=null", f"experiment.workspace={tmp_path}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("flexrl run: llm.base_url is not set")
