"""Supervised fine-tuning: the chat template, response-only masks, packing, the generated
instructions and their judge, the grown vocabulary, and a short run through the trainer."""

from __future__ import annotations

import json

import pytest
import torch

from gptscope.align.sft import fine_tune, instruction_following, respond
from gptscope.data.chat import (
    ASSISTANT,
    CHAT_TOKENS,
    END,
    USER,
    chat_tokenizer,
    encode_pair,
    pack,
    read_pairs,
)
from gptscope.data.instructions import INSTRUCTION_KINDS, follows, generate_instructions
from gptscope.data.stories import stories_text
from gptscope.tokenizers import BPETokenizer, CharTokenizer
from gptscope.train.runs import open_run


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    return chat_tokenizer(CharTokenizer.train(stories_text(50)))


def test_adding_special_tokens_keeps_every_id() -> None:
    for base in (CharTokenizer.train("ab c.\n"),
                 BPETokenizer.train(stories_text(30), 300, special_tokens=["<|endoftext|>"])):
        grown = chat_tokenizer(base)
        assert grown.vocab_size == base.vocab_size + 3
        text = "the dog loves the cake." if isinstance(base, BPETokenizer) else "ab c."
        assert grown.encode(text) == base.encode(text)
        assert [grown.special_tokens[t] for t in CHAT_TOKENS] == \
            list(range(base.vocab_size, base.vocab_size + 3))
        assert chat_tokenizer(grown) is grown  # already there: nothing added


def test_only_the_response_and_end_are_scored(char_tok) -> None:
    enc = encode_pair(char_tok, "who got it.", "mary.")
    text = char_tok.decode(enc.ids)
    assert text == f"{USER}who got it.{ASSISTANT}mary.{END}"
    scored = char_tok.decode([i for i, r in zip(enc.ids, enc.response, strict=True) if r])
    assert scored == f"mary.{END}"
    x, y, m = pack([enc], seq_len=30, pad_id=char_tok.special_tokens[END])
    # targets are the inputs shifted by one; the mask follows the targets
    assert torch.equal(x[0, 1:len(enc.ids) - 1], y[0, :len(enc.ids) - 2])
    assert char_tok.decode(y[0][m[0]].tolist()) == f"mary.{END}"
    assert not m[0, len(enc.ids) - 1:].any()  # padding is never scored


def test_packing_fills_rows_with_whole_examples(char_tok) -> None:
    examples = [encode_pair(char_tok, "ab.", "c" * k) for k in (1, 2, 3, 4, 5, 6)]
    x, y, m = pack(examples, seq_len=30, pad_id=0)
    x1, _, m1 = pack(examples, seq_len=30, pad_id=0, packing=False)
    assert len(x) < len(x1) == 6
    assert int(m.sum()) == int(m1.sum()) == sum(sum(e.response) for e in examples)
    with pytest.raises(ValueError, match="rows hold n_ctx \\+ 1 = 9"):
        pack(examples, seq_len=8, pad_id=0)


def test_read_pairs_names_bad_lines(tmp_path) -> None:
    good = tmp_path / "chat.jsonl"
    good.write_text(json.dumps({"prompt": "hi", "response": "yo"}) + "\n\n")
    assert read_pairs(good) == [("hi", "yo")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi"}\n')
    with pytest.raises(ValueError, match="line 1 needs string fields 'prompt' and 'response'"):
        read_pairs(bad)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="is empty: it holds no records"):
        read_pairs(tmp_path / "empty.jsonl")


def test_instructions_are_followed_by_their_own_responses_and_judged_exactly() -> None:
    instructions = generate_instructions(200, seed=5)
    assert {i.kind for i in instructions} == set(INSTRUCTION_KINDS)
    assert all(follows(i, i.response) for i in instructions)
    assert generate_instructions(20, seed=5) == instructions[:20]
    story = next(i for i in instructions if i.kind == "story")
    wrong = "the dog hates the cake in the park." if story.target["sentiment"] == "positive" \
        else "the dog loves the cake in the park."
    assert not follows(story, wrong)
    ioi = next(i for i in instructions if i.kind == "ioi")
    assert follows(ioi, ioi.target["answer"]) and not follows(ioi, "nobody.")
    # "the dog" is not mentioned by a story about "the dogs"
    from gptscope.data.instructions import Instruction

    asked = Instruction("story", "", "", {"sentiment": "positive", "subject": "the dog"})
    assert not follows(asked, "the dogs love the cake in the park.")
    assert follows(asked, "the dog loves the cake in the park.")


def test_a_short_sft_run_grows_the_vocabulary_and_answers(stories_base, tmp_path) -> None:
    out = tmp_path / "sft"
    result = fine_tune(stories_base, out, n_instructions=200, max_steps=20, eval_every=20,
                       threads=1, progress=False)
    base, _ = open_run(stories_base)
    tuned, _ = open_run(out)
    assert tuned.cfg.d_vocab == base.cfg.d_vocab + 3
    assert END in tuned.tokenizer.special_tokens
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["init_from"] == str(stories_base) and saved["data"]["chat"]
    assert "val_loss" in result.last_eval
    # The answer is text up to <|end|>: no role token leaks into it.
    answer = respond(tuned, "tell a happy story about the dog.")
    assert not any(t in answer for t in CHAT_TOKENS)
    scores = instruction_following(tuned, n_per_kind=2)
    assert set(scores) == {*INSTRUCTION_KINDS, "all"}
    with pytest.raises(ValueError, match="no chat tokens"):
        respond(base, "hi.")


def test_grown_vocabulary_keeps_the_base_logits(stories_base) -> None:
    from gptscope.model.transformer import Transformer
    from gptscope.train.init import load_base_weights

    base, _ = open_run(stories_base)
    grown = Transformer(base.cfg.replace(d_vocab=base.cfg.d_vocab + 3))
    load_base_weights(grown, base)
    tokens = torch.tensor([base.tokenizer.encode("\nthe dog loves")])
    with torch.no_grad():
        old, new = base(tokens), grown(tokens)
    assert torch.equal(new[..., :base.cfg.d_vocab], old)
    assert torch.allclose(grown.W_E[-1], base.W_E.mean(0))
