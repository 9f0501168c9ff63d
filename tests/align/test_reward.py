"""Reward models: the head reads each text's last real token; trained on the stories'
labels it orders held-out texts; its folder round-trips."""

from __future__ import annotations

import pytest
import torch
from bounds import check

from gptscope.align.reward import (
    RewardModel,
    load_reward_model,
    pad_right,
    preference_pairs,
    save_reward_model,
    sentiment_texts,
    stories_reward_data,
)
from gptscope.config import ModelConfig
from gptscope.data.stories import classify_sentiment
from gptscope.model.transformer import Transformer
from gptscope.tokenizers import CharTokenizer


def _tiny_rm() -> RewardModel:
    torch.manual_seed(0)
    body = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=16, d_vocab=10))
    rm = RewardModel(body)
    torch.nn.init.normal_(rm.head.weight)
    return rm.eval()


def test_reward_reads_the_last_real_token_whatever_the_padding() -> None:
    rm = _tiny_rm()
    rows = [[1, 2, 3], [4, 5, 6, 7, 8]]
    tokens, lengths = pad_right(rows, 9)
    padded = rm(tokens, lengths)
    alone = torch.stack([rm(torch.tensor([r])) for r in rows]).squeeze(-1)
    assert torch.allclose(padded, alone, atol=1e-6)
    assert lengths.tolist() == [3, 5] and tokens[0, 3:].tolist() == [9, 9]
    with pytest.raises(ValueError, match="encodes to no tokens"):
        pad_right([[1], []], 0)


def test_the_head_starts_at_zero() -> None:
    body = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=16, d_vocab=10))
    assert RewardModel(body)(torch.tensor([[1, 2]])).item() == 0.0


def test_sentiment_texts_carry_the_corpus_labels() -> None:
    texts = sentiment_texts(300, seed=3, max_sentences=1)
    assert all(t.startswith("\n") and t.endswith(".") for t, _ in texts)
    for text, label in texts:
        judged = classify_sentiment(text)  # a single sentence: the lexical judge agrees
        assert judged == label or (label == 0.5 and judged == 0.5)
    labels = {label for _, label in sentiment_texts(300, seed=3, max_sentences=2)}
    assert {0.25, 0.75} <= labels  # two sentences can mix
    pairs = preference_pairs(texts, 50, seed=0)
    by_text = dict(texts)
    assert len(pairs) == 50 and all(by_text[c] > by_text[r] for c, r in pairs)


def test_save_and_load_round_trip(tmp_path) -> None:
    rm = _tiny_rm()
    rm.body.tokenizer = CharTokenizer("abcdefghij")
    save_reward_model(rm, tmp_path / "rm", step=5)
    again = load_reward_model(tmp_path / "rm")
    tokens = torch.tensor([[1, 2, 3]])
    assert torch.equal(rm(tokens), again(tokens))
    with pytest.raises(ValueError, match="not a finished reward-model run"):
        load_reward_model(tmp_path)


def test_empty_own_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="labelled texts given are empty"):
        stories_reward_data(CharTokenizer.train("ab\n."), labels=[])
    with pytest.raises(ValueError, match="preference pairs given are empty"):
        stories_reward_data(CharTokenizer.train("ab\n."), "pairs", pairs=[])


@pytest.mark.learned
def test_reward_model_orders_held_out_texts(sentence_rm) -> None:
    """The issue's bar: >= 90% held-out pairwise accuracy on the stories' labels."""
    run, scores = sentence_rm
    # measured over 30 runs: 0.946 to 0.998
    check("reward.val_pairwise_accuracy", scores["val_pairwise_accuracy"], ">=", 0.90)
    rm = load_reward_model(run)
    good, bad = rm.score_texts(["\nthe dog loves the kind cat in the park.",
                                "\nthe dog hates the cruel cat in the park."]).tolist()
    # measured over 30 runs: 4.06 to 8.25
    check("reward.minimal_pair_margin", good - bad, ">", 0.0)
