"""Log-likelihood scores are the same at batch sizes 1, 3 and 16, with either padding side
and with 1 or 2 threads, and agree with a plain fp32 forward; the length trap by hand."""

import pytest
import torch

import gptscope as gs
from gptscope.data.stories import stories_text
from gptscope.evals.loglik import continuation_logprobs, loglik_choice


@pytest.fixture(scope="module")
def stories():
    return gs.load(gs.zoo.path("stories")).eval()


@pytest.fixture(scope="module")
def pairs(stories):
    sentences = [s.strip() + "." for s in stories_text(60, seed=5).split(".") if s.strip()]
    out = []
    for i, s in enumerate(sentences[:16]):
        cut = 3 + (7 * i) % (len(s) - 4)  # contexts and continuations of many lengths
        ids = stories.tokenizer.encode(s)
        out.append((ids[:cut], ids[cut:]))
    return out


def test_scores_identical_across_batch_sizes_padding_and_threads(stories, pairs):
    reference = continuation_logprobs(stories, pairs, batch_size=1)
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            for batch_size in (1, 3, 16):
                for side in ("left", "right"):
                    got = continuation_logprobs(stories, pairs, batch_size, side)
                    assert got == reference, (n_threads, batch_size, side)
    finally:
        torch.set_num_threads(threads)


def test_scores_agree_with_a_plain_forward(stories, pairs):
    got = continuation_logprobs(stories, pairs, batch_size=16)
    for (context, continuation), lps in zip(pairs, got, strict=True):
        ids = torch.tensor([context + continuation])
        with torch.no_grad():
            logp = stories(ids[:, :-1]).log_softmax(-1)[0]
        want = logp[len(context) - 1:].gather(-1, ids[0, len(context):, None])[:, 0]
        assert lps == pytest.approx(want.tolist(), abs=1e-4)


def test_the_length_trap():
    # The right answer is longer: each of its 6 tokens is likely, but together they cost
    # more than the wrong answer's 2 unlikely tokens.
    logliks, lengths = [-0.5 * 6, -1.2 * 2], [6, 2]
    assert loglik_choice(logliks) == 1  # acc: the short, wrong answer
    assert loglik_choice(logliks, lengths) == 0  # acc_norm: per unit of length
    assert loglik_choice([-1.0, -1.0]) == 0  # ties go to the first


@pytest.mark.parametrize("call, needle", [
    (lambda m: continuation_logprobs(m, []), "empty"),
    (lambda m: continuation_logprobs(m, [([1], [])]), "sample 0"),
    (lambda m: continuation_logprobs(m, [([1], [2])] * 2 + [([1] * 200, [2])]), "sample 2"),
    (lambda m: continuation_logprobs(m, [([1], [2])], padding_side="middle"), "padding_side"),
    (lambda m: loglik_choice([-1.0, -2.0], [3]), "lengths"),
])
def test_bad_input_is_named(stories, call, needle):
    with pytest.raises(ValueError, match=needle):
        call(stories)
