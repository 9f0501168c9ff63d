"""The red LM's corpus (topical lists of instructions) and how questions are sampled."""

from __future__ import annotations

import pytest

import gptscope as gs
from gptscope.data.instructions import generate_instructions
from gptscope.evals.redteam.questions import (
    LIST_START,
    is_question,
    lists_text,
    question_lists,
    sample_questions,
    topic,
)


def test_each_list_keeps_to_one_topic():
    text = question_lists(200, seed=1)
    assert text.startswith(LIST_START) and text.endswith("\n")
    topic_of = {i.prompt: topic(i) for i in generate_instructions(1000, seed=1)}
    lists = [block.split("\n") for block in text.strip("\n").split(LIST_START)]
    assert len(lists) == 200 and all(2 <= len(lines) <= 5 for lines in lists)
    for lines in lists:
        assert len({topic_of[line] for line in lines}) == 1, lines
    topics = {topic_of[lines[0]] for lines in lists}
    assert topics == {"story-positive", "story-negative", "rewrite-happy", "rewrite-sad",
                      "ioi", "classify"}


def test_lists_text_draws_only_the_given_questions():
    text = lists_text(["a b.", "c d."], 50, seed=0)
    lines = [line for line in text.split("\n") if line]
    assert set(lines) == {"a b.", "c d."} and len(lines) >= 100


@pytest.mark.parametrize("line, ok", [("tell a story.\n", True), ("\n", False),
                                      ("  \n", False), ("unfinished", False),
                                      ("tell a story<|end|>\n", False)])
def test_is_question(line, ok):
    assert is_question(line) is ok


def test_sampled_questions_are_finished_nonblank_lines_and_seeded():
    model = gs.load("stories")  # a char model of the same alphabet writes lines too
    questions = sample_questions(model, 6, seed=4)
    assert len(questions) == 6 and all(q and "\n" not in q for q in questions)
    assert sample_questions(model, 6, seed=4) == questions
    with pytest.raises(ValueError, match="few-shot examples fill"):
        sample_questions(model, 2, seed=0, examples=("x" * 130,))
