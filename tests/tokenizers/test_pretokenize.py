"""The regex-free GPT-2 pre-splitter must agree with the `regex` module."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptscope.tokenizers import GPT2_PATTERN, split_gpt2
from gptscope.tokenizers.pretokenize import make_splitter

regex = pytest.importorskip("regex")
REFERENCE = regex.compile(GPT2_PATTERN)

CASES = [
    "",
    " ",
    "Hello world",
    "Hello   world  ",
    "  leading spaces",
    "tabs\tand\nnewlines\n\n  indented",
    "\n word",
    " \nword",
    "it's they're we've I'm you'll he'd don't",
    "'s' 'S '' ''s 'x",
    "CAPS'LL 'RE",
    "price: $3.50, 1,000,000 and ½ or Ⅻ or ٣٤",
    "café naïve résumé Ελληνικά русский 中文字符 日本語 한국어",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "combining e\u0301 and zero\u200bwidth",
    "odd spaces\u00a0nbsp\u2003em\u3000ideo\u2028ls\u2029ps\x85nel",
    "file separators \x1c\x1d\x1e\x1f are not \\s for regex",
    "control \x00\x07 chars",
    "code: def f(x): return x**2  # comment\n\n\n",
    "一二三 are letters; 〇 is a number",
    "trailing space ",
    "trailing newlines\n\n",
]


@pytest.mark.parametrize("text", CASES)
def test_fallback_matches_regex_on_examples(text: str) -> None:
    assert split_gpt2(text) == REFERENCE.findall(text)


# Characters assigned in Python's own Unicode database; the fallback can only
# know the classes of those (the `regex` module may ship a newer Unicode).
assigned = st.characters(codec="utf-8").filter(lambda c: unicodedata.category(c) != "Cn")
tricky = st.sampled_from(list(" \t\n\r'sdmltrve\u00a0\u3000\x1cA7½😀é\u0301-"))


@settings(max_examples=400, deadline=None)
@given(st.text(st.one_of(assigned, tricky), max_size=40))
def test_fallback_matches_regex_property(text: str) -> None:
    pieces = split_gpt2(text)
    assert pieces == REFERENCE.findall(text)
    assert "".join(pieces) == text


def test_custom_pattern_keeps_text_between_matches() -> None:
    split = make_splitter(r"\d+")
    assert split("ab12cd345") == ["ab", "12", "cd", "345"]


def test_bad_pattern_is_value_error() -> None:
    with pytest.raises(ValueError, match="cannot compile"):
        make_splitter("(unclosed")
