"""The target's batched replies, and the reward a red LM is trained on."""

from __future__ import annotations

import pytest
import torch

import gptscope as gs
from gptscope.align.reward import RewardModel
from gptscope.align.sft import respond
from gptscope.data.instructions import generate_instructions
from gptscope.evals.redteam.offensive import reply_scores
from gptscope.evals.redteam.questions import LIST_START
from gptscope.evals.redteam.target import NOT_A_QUESTION, ReplyReward, replies


@pytest.fixture(scope="module")
def assistant():
    return gs.load("stories-assistant").eval()


def test_replies_are_what_the_assistant_answers_alone(assistant):
    """Mixed lengths (short story prompts beside long IOI ones, so some replies are cut by
    a longer neighbour's room and made again alone) give respond()'s answers exactly."""
    questions = [i.prompt for i in generate_instructions(20, seed=11)] + ["", "tell a"]
    alone = [respond(assistant, q, 96) for q in questions]
    assert replies(assistant, questions, batch_size=8) == alone
    assert any(len(r) > 60 for r in alone) and any(len(r) < 10 for r in alone)


def test_replies_need_an_assistant():
    with pytest.raises(ValueError, match="no chat tokens.*align sft"):
        replies(gs.load("stories"), ["tell a sad story about mary."])


def test_reply_reward_scores_questions_and_not_other_lines(assistant):
    body = gs.load("stories-assistant")
    classifier = RewardModel(body).eval()
    torch.nn.init.normal_(classifier.head.weight, std=0.5, generator=torch.Generator()
                          .manual_seed(0))
    tok = assistant.tokenizer
    lines = ["tell a sad story about mary.\n", "\n", "tell a happy st"]
    rows = [tok.encode(LIST_START + line) for line in lines]
    tokens = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r)
    reward = ReplyReward(assistant, classifier, tok, LIST_START)
    got = reward(tokens, torch.tensor([len(r) for r in rows]))
    reply = respond(assistant, "tell a sad story about mary.", 96)
    assert got[0] == reply_scores(classifier, [reply])[0]  # its worst sentence's score
    assert got[1:].tolist() == [NOT_A_QUESTION, NOT_A_QUESTION]
