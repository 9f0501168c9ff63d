"""`gptscope align`: every subcommand has --help, and bad input gets a one-line error."""

from __future__ import annotations

import json

import pytest

from gptscope.cli import main

SUBCOMMANDS = ["sft", "rm", "ppo", "dpo", "grpo", "rate", "label", "results", "chart"]


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(sub, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["align", sub, "--help"])
    assert exit_info.value.code == 0
    assert "usage: gptscope align " + sub in capsys.readouterr().out


def test_an_empty_preference_file_is_refused(stories_base, tmp_path, capsys) -> None:
    empty = tmp_path / "pairs.jsonl"
    empty.write_text("")
    assert main(["align", "dpo", str(stories_base), "--pairs", str(empty), "--out",
                 str(tmp_path / "dpo")]) == 2
    err = capsys.readouterr().err
    assert "gptscope align: error:" in err and "is empty: it holds no records" in err
    assert main(["align", "rm", str(stories_base), "--pairs", str(empty), "--out",
                 str(tmp_path / "rm")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_a_run_without_tokenizer_is_refused_by_sft(tmp_path, capsys) -> None:
    from gptscope.config import ModelConfig
    from gptscope.io.checkpoint import save
    from gptscope.model.transformer import Transformer

    save(Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=16, d_vocab=5)),
         tmp_path / "bare")
    assert main(["align", "sft", str(tmp_path / "bare"), "--out", str(tmp_path / "s")]) == 2
    assert "has no tokenizer.json" in capsys.readouterr().err


def test_rate_results_and_label_pages(stories_base, tmp_path, capsys) -> None:
    page = tmp_path / "rate.html"
    assert main(["align", "rate", str(stories_base), str(stories_base), "--out", str(page),
                 "--n", "3", "--max-new-tokens", "30"]) == 0
    assert page.is_file() and "rate the 3 pairs" in capsys.readouterr().out
    assert main(["align", "label", str(stories_base), "--out", str(tmp_path / "l.html"),
                 "--n", "3", "--max-new-tokens", "30"]) == 0
    export = {"kind": "rating", "version": 1, "page_id": "x", "title": "t", "name_a": "a",
              "name_b": "b", "seed": 0, "n_items": 2,
              "ratings": [{"item": 0, "prompt": "\n", "a": "x.", "b": "y.", "left": "a",
                           "winner": "a"},
                          {"item": 1, "prompt": "\n", "a": "z.", "b": "w.", "left": "b",
                           "winner": "tie"}]}
    (tmp_path / "r.json").write_text(json.dumps(export))
    assert main(["align", "results", str(tmp_path / "r.json"), "--pairs",
                 str(tmp_path / "p.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "a won 1, b won 0, 1 tie" in out and "wrote 1 preference pairs" in out
