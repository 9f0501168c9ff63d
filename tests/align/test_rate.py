"""The blind-rating and labelling pages: their readers in Python, and the pages themselves
clicked through in headless Chromium (driven by Playwright, Debian's chromium binary).

Without chromium or Playwright the browser tests skip locally but fail when $CI is set.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from gptscope.align.rate import (
    LABEL_SCORES,
    RatingResult,
    left_models,
    ratings_to_preferences,
    read_labels,
    read_ratings,
    wilson_interval,
    write_labelling_page,
    write_preferences,
    write_rating_page,
)

# Markup a sample might hold; it must show as these characters, never run or render.
XSS = '<img src=x onerror="document.body.dataset.pwned=1">'
MARKUP = "</script><b>bold</b> & more"

ITEMS = [(f"prompt {i}:", f"sample a{i}", f"sample b{i}") for i in range(4)]


def _page_data(path: Path) -> dict:
    found = re.search(r'<script type="application/json" id="rt-data">(.*?)</script>',
                      path.read_text(encoding="utf-8"), re.DOTALL)
    assert found, "the page has no data block"
    return json.loads(found.group(1))


def _rating_export(ratings: list[dict], **top) -> dict:
    return {"kind": "rating", "version": 1, "page_id": "0" * 16, "title": "t",
            "name_a": "alpha", "name_b": "beta", "seed": 0, "n_items": len(ratings),
            "ratings": ratings, **top}


def _rating(winner: str, i: int = 0) -> dict:
    return {"item": i, "prompt": f"p{i}", "a": f"a{i}", "b": f"b{i}", "left": "a",
            "winner": winner}


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the shuffle and the pages


def test_left_models_is_deterministic_balanced_and_swaps() -> None:
    first = left_models(40, seed=3)
    assert first == left_models(40, seed=3)
    assert first.count("a") == first.count("b") == 20
    assert first != left_models(40, seed=4)
    assert first != ["a"] * 20 + ["b"] * 20  # shuffled, not in blocks
    odd = left_models(5, seed=0)
    assert len(odd) == 5 and abs(odd.count("a") - odd.count("b")) == 1


def test_rating_page_puts_sides_as_the_seed_says(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        data = _page_data(write_rating_page(ITEMS, tmp_path / f"r{seed}.html", seed=seed))
        assert [it["left"] for it in data["items"]] == left_models(len(ITEMS), seed)
        assert [(it["prompt"], it["a"], it["b"]) for it in data["items"]] == ITEMS
    again = _page_data(write_rating_page(ITEMS, tmp_path / "again.html", seed=0))
    assert again["page_id"] == _page_data(tmp_path / "r0.html")["page_id"]
    assert again["page_id"] != _page_data(tmp_path / "r1.html")["page_id"]


def test_labelling_page_order_is_a_seeded_shuffle(tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(12)]
    orders = [[it["index"] for it in _page_data(
        write_labelling_page(texts, tmp_path / f"l{s}.html", seed=s))["items"]] for s in (0, 0, 1)]
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0]) == list(range(12)) and orders[0] != list(range(12))


def test_pages_escape_markup_and_are_self_contained(tmp_path: Path) -> None:
    rate = write_rating_page([(XSS, MARKUP, "plain")], tmp_path / "r.html", title="<i>t</i>")
    label = write_labelling_page([MARKUP, XSS], tmp_path / "l.html", title="<i>t</i>")
    for path in (rate, label):
        text = path.read_text(encoding="utf-8")
        assert "<b>bold" not in text and "<img src=x" not in text and "<i>t</i>" not in text
        assert "&lt;i&gt;t&lt;/i&gt;" in text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "no network"
    assert _page_data(rate)["items"][0] == {"prompt": XSS, "a": MARKUP, "b": "plain",
                                            "left": left_models(1, 0)[0]}
    assert {it["text"] for it in _page_data(label)["items"]} == {MARKUP, XSS}


@pytest.mark.parametrize("kwargs, message", [
    ({"items": []}, "items=[] must be a non-empty list"),
    ({"items": "abc"}, "must be a non-empty list"),
    ({"items": [("p", "a")]}, "items[0]=('p', 'a') is not three strings"),
    ({"items": [("p", "a", 3)]}, "is not three strings"),
    ({"name_a": "x", "name_b": "x"}, "name_a and name_b are both 'x'"),
    ({"name_a": ""}, "name_a='' must be a non-empty string"),
    ({"seed": "0"}, "seed='0' must be an int"),
    ({"title": None}, "title=None must be a string"),
])
def test_write_rating_page_rejects_bad_input(tmp_path: Path, kwargs: dict, message: str
                                             ) -> None:
    args = {"items": ITEMS, "out": tmp_path / "r.html", **kwargs}
    with pytest.raises(ValueError) as err:
        write_rating_page(args.pop("items"), args.pop("out"), **args)
    assert message in str(err.value)
    assert not (tmp_path / "r.html").exists()


def test_pages_refuse_a_directory_as_out(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is a directory; give a file path such as"):
        write_rating_page(ITEMS, tmp_path)
    with pytest.raises(ValueError, match=r"is a directory"):
        write_labelling_page(["t"], tmp_path)


@pytest.mark.parametrize("texts, labels, message", [
    ([], ("positive",), "texts=[] must be a non-empty list of strings"),
    (["ok", 5], ("positive",), "texts[1]=5 is not a string"),
    (["ok"], ("great",), "labels holds 'great', which has no score; use names from"),
    (["ok"], (), "labels=() must be a non-empty list"),
    (["ok"], ("positive", "positive"), "names a label twice"),
])
def test_write_labelling_page_rejects_bad_input(tmp_path: Path, texts, labels, message: str
                                                ) -> None:
    with pytest.raises(ValueError) as err:
        write_labelling_page(texts, tmp_path / "l.html", labels=labels)
    assert message in str(err.value)


# ---------------------------------------------------------------- the readers


def test_wilson_interval_matches_hand_worked_values() -> None:
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    with pytest.raises(ValueError, match="n=0 must be positive"):
        wilson_interval(0, 0)


def test_read_ratings_counts_wins_ties_and_interval(tmp_path: Path) -> None:
    winners = ["a", "a", "b", "tie", "a"]
    path = _write_json(tmp_path / "r.json", _rating_export(
        [_rating(w, i) for i, w in enumerate(winners)], n_items=6))
    result = read_ratings(path)
    assert isinstance(result, RatingResult)
    assert (result.n, result.wins_a, result.wins_b, result.ties) == (5, 3, 1, 1)
    assert result.win_rate_a == pytest.approx(3.5 / 5)
    assert result.interval == pytest.approx(wilson_interval(3.5, 5))
    line = result.describe()
    assert "alpha won 3, beta won 1, 1 tie over n=5 rated of 6 items" in line
    assert "win rate of alpha 0.700" in line and "95% Wilson interval" in line
    with pytest.raises(AttributeError):
        result.n = 1  # frozen


def test_ratings_to_preferences_drops_ties_and_writes_jsonl(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "r.json", _rating_export(
        [_rating("a", 0), _rating("tie", 1), _rating("b", 2)]))
    pairs = ratings_to_preferences(path)
    assert pairs == [{"prompt": "p0", "chosen": "a0", "rejected": "b0"},
                     {"prompt": "p2", "chosen": "b2", "rejected": "a2"}]
    out = write_preferences(pairs + [{"prompt": "p", "chosen": MARKUP, "rejected": "\u00e9\n"}],
                            tmp_path / "prefs" / "pairs.jsonl")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines][:2] == pairs
    assert json.loads(lines[2])["chosen"] == MARKUP and json.loads(lines[2])["rejected"] == "é\n"
    assert not list(out.parent.glob(".*.tmp")), "written atomically, nothing left over"


def test_write_preferences_rejects_bad_records(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="records is empty, so there is nothing to write"):
        write_preferences([], tmp_path / "p.jsonl")
    with pytest.raises(ValueError, match=r"records\[1\]=.*needs string fields prompt, chosen"):
        write_preferences([{"prompt": "p", "chosen": "c", "rejected": "r"},
                           {"prompt": "p", "chosen": "c"}], tmp_path / "p.jsonl")
    with pytest.raises(ValueError, match="is a directory"):
        write_preferences([{"prompt": "p", "chosen": "c", "rejected": "r"}], tmp_path)
    assert not (tmp_path / "p.jsonl").exists()


RATING_ERRORS = [
    (None, "does not exist; export it from the rating page (Export JSON after Reveal)"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list, not an object"),
    (json.dumps(_rating_export([_rating("a")], kind="labels")), "holds kind 'labels', not "
     "'rating'; it is not a rating page's export (read_labels reads the other kind)"),
    (json.dumps(_rating_export([_rating("a")], version=2)), "is version 2 of the rating format"),
    (json.dumps(_rating_export({"0": "a"})), "needs a list under 'ratings'"),
    (json.dumps(_rating_export([])), "holds no ratings: the list is empty; rate at least one"),
    (json.dumps(_rating_export(["a"])), "ratings[0] is 'a', not an object"),
    (json.dumps(_rating_export([{**_rating("a"), "b": None}])), "ratings[0] needs a string 'b'"),
    (json.dumps(_rating_export([_rating("a", 0), _rating("left", 1)])),
     "ratings[1] has winner 'left'; it must be one of 'a', 'b', 'tie'"),
]


@pytest.mark.parametrize("content, message", RATING_ERRORS)
def test_rating_readers_name_the_file_the_problem_and_the_fix(tmp_path: Path, content, message
                                                              ) -> None:
    path = tmp_path / "ratings.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    for reader in (read_ratings, ratings_to_preferences):
        with pytest.raises(ValueError) as err:
            reader(path)
        assert message in str(err.value) and "ratings.json" in str(err.value)


def _labels_export(records, **top) -> dict:
    return {"kind": "labels", "version": 1, "page_id": "0" * 16, "title": "t",
            "labels": list(LABEL_SCORES), "n_items": 3, "records": records, **top}


def test_read_labels_gives_soft_scores(tmp_path: Path) -> None:
    assert LABEL_SCORES == {"positive": 1.0, "neutral": 0.5, "negative": 0.0}
    records = [{"index": i, "text": t, "label": lab} for i, (t, lab) in
               enumerate([("good", "positive"), ("meh", "neutral"), (MARKUP, "negative")])]
    path = _write_json(tmp_path / "l.json", _labels_export(records))
    assert read_labels(path) == [("good", 1.0), ("meh", 0.5), (MARKUP, 0.0)]


@pytest.mark.parametrize("content, message", [
    (None, "does not exist; export it from the labelling page (Export JSON)"),
    ("", "is not valid JSON"),
    (json.dumps(_rating_export([_rating("a")])), "holds kind 'rating', not 'labels'"),
    (json.dumps(_labels_export([])), "holds no records: the list is empty; label at least one"),
    (json.dumps(_labels_export([{"text": "x", "label": "great"}])),
     "records[0] has label 'great', which has no score"),
    (json.dumps(_labels_export([{"text": 3, "label": "positive"}])),
     "records[0] needs a string 'text', got 3"),
])
def test_read_labels_names_the_file_the_problem_and_the_fix(tmp_path: Path, content, message
                                                            ) -> None:
    path = tmp_path / "labels.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read_labels(path)
    assert message in str(err.value) and "labels.json" in str(err.value)


# ---------------------------------------------------------------- in the browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="module")
def browser(chromium: str):
    """One headless Chromium for the module; each test opens its own context (a fresh
    profile, so its own localStorage)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but playwright is not installed: pip install -e '.[dev]'")
        pytest.skip("playwright not installed (pip install -e '.[dev]')")
    driver = sync_playwright().start()
    launched = driver.chromium.launch(executable_path=chromium, headless=True,
                                      args=CHROMIUM_ARGS)
    yield launched
    launched.close()
    driver.stop()


class Tab:
    """A page that records every JavaScript error and console error it sees."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}")
                     if msg.type == "error" else None)

    def open(self, path: Path) -> None:
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("document.body.dataset.rtReady === '1'")

    def reload(self) -> None:
        self.page.reload()
        self.page.wait_for_function("document.body.dataset.rtReady === '1'")

    def text(self, selector: str) -> str:
        return self.page.text_content(selector) or ""

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.text("#gs-errors") == ""


@pytest.fixture
def tab(browser):
    context = browser.new_context(accept_downloads=True)
    opened = Tab(context)
    yield opened
    opened.assert_clean()
    context.close()


def test_the_error_catcher_sees_a_broken_page(tab: Tab, tmp_path: Path) -> None:
    path = write_rating_page(ITEMS, tmp_path / "rate.html")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"use strict";', '"use strict"; null.boom;', 1),
                    encoding="utf-8")
    tab.page.goto(path.resolve().as_uri())
    assert any("boom" in e for e in tab.errors), tab.errors
    tab.errors.clear()  # seen; the fixture's check after the test stays meaningful elsewhere
    tab.page.evaluate("document.getElementById('gs-errors').textContent = ''")


def _choose(tab: Tab, item: tuple[str, str, str], winner: str, by_key: bool = False) -> None:
    """Pick ``winner`` ("a", "b" or "tie") for the shown item, finding its side on screen."""
    if winner == "tie":
        side = "tie"
    else:
        wanted = item[1] if winner == "a" else item[2]
        assert wanted in (tab.text("#left"), tab.text("#right"))
        side = "left" if tab.text("#left") == wanted else "right"
    if by_key:
        tab.page.keyboard.press({"left": "ArrowLeft", "right": "2", "tie": "3"}[side])
    else:
        tab.page.click(f"#choose-{side}")


def _rate_all(tab: Tab, winners: list[str], keyed: int = -1) -> list[str]:
    """Rate every item in the order shown; returns the side clicked for each."""
    sides = []
    for i, winner in enumerate(winners):
        assert tab.text("#progress").startswith(f"Item {i + 1} of {len(winners)}")
        assert tab.text("#prompt") == ITEMS[i][0]
        sides.append(tab.text("#left"))
        _choose(tab, ITEMS[i], winner, by_key=i == keyed)
    return sides


def test_rating_by_clicks_and_keys_reveals_the_win_rate(tab: Tab, tmp_path: Path) -> None:
    page_path = write_rating_page(ITEMS, tmp_path / "rate.html", name_a="run-alpha",
                                  name_b="run-beta", seed=0)
    assert set(left_models(4, 0)) == {"a", "b"}, "the test needs both sides swapped in"
    tab.open(page_path)
    shown_left = _rate_all(tab, ["a", "b", "a", "tie"], keyed=1)
    assert shown_left != [a for _, a, _ in ITEMS], "some items show B's sample on the left"
    # Everything is rated, but nothing has named the models yet.
    body = tab.page.inner_text("body")
    assert "run-alpha" not in body and "run-beta" not in body
    assert tab.page.is_hidden("#outcome") and tab.text("#results") == ""
    assert tab.page.is_disabled("#export")
    tab.page.click("#reveal")
    rate = tab.page.locator("#win-rate")
    assert rate.get_attribute("data-win-rate-a") == "0.625"
    assert (rate.get_attribute("data-n"), rate.get_attribute("data-ties")) == ("4", "1")
    assert "run-alpha" in tab.text("#mapping") and "run-beta" in tab.text("#mapping")
    assert tab.page.is_disabled("#choose-left"), "choices are final after the reveal"
    shown = tmp_path / "shown.json"
    shown.write_text(tab.text("#results"), encoding="utf-8")
    with tab.page.expect_download() as download:
        tab.page.click("#export")
    exported = tmp_path / "exported.json"
    download.value.save_as(exported)
    for path in (shown, exported):
        result = read_ratings(path)
        assert (result.n, result.wins_a, result.wins_b, result.ties) == (4, 2, 1, 1)
        assert result.win_rate_a == 0.625 and result.name_a == "run-alpha"
        assert f"{result.interval[0]:.3f}" in tab.text("#win-rate")
    assert ratings_to_preferences(exported) == [
        {"prompt": ITEMS[0][0], "chosen": ITEMS[0][1], "rejected": ITEMS[0][2]},
        {"prompt": ITEMS[1][0], "chosen": ITEMS[1][2], "rejected": ITEMS[1][1]},
        {"prompt": ITEMS[2][0], "chosen": ITEMS[2][1], "rejected": ITEMS[2][2]}]


def test_rating_choices_survive_a_reload(tab: Tab, tmp_path: Path) -> None:
    page_path = write_rating_page(ITEMS, tmp_path / "rate.html", seed=1)
    tab.open(page_path)
    _choose(tab, ITEMS[0], "b")
    _choose(tab, ITEMS[1], "tie")
    tab.reload()
    assert tab.text("#progress") == "Item 3 of 4 \u00b7 2 rated"
    tab.page.click("#prev")
    assert tab.page.get_attribute("#choose-tie", "aria-pressed") == "true"
    tab.page.click("#reveal")  # early: 2 of 4 rated
    tab.reload()
    assert tab.page.get_attribute("body", "data-rate-state") == "revealed"
    assert tab.page.locator("#win-rate").get_attribute("data-win-rate-a") == "0.25"
    tab.page.click("#reset")
    tab.page.click("#reset")  # the second click confirms
    tab.reload()
    assert tab.text("#progress") == "Item 1 of 4 \u00b7 0 rated"
    assert tab.page.get_attribute("body", "data-rate-state") == "rating"


def test_rating_page_shows_markup_as_text(tab: Tab, tmp_path: Path) -> None:
    page_path = write_rating_page([(XSS, MARKUP, XSS)], tmp_path / "rate.html",
                                  title="<i>title</i>")
    tab.open(page_path)
    assert tab.text("#prompt") == XSS
    assert {tab.text("#left"), tab.text("#right")} == {MARKUP, XSS}
    assert tab.text("h1") == "<i>title</i>"
    assert tab.page.locator("main b, main img, main i").count() == 0
    assert tab.page.get_attribute("body", "data-pwned") is None


def test_labelling_by_clicks_and_keys_exports_soft_scores(tab: Tab, tmp_path: Path) -> None:
    wanted = {"what a lovely day": "positive", "it rained": "neutral", "awful": "negative",
              MARKUP: "positive"}
    page_path = write_labelling_page(list(wanted), tmp_path / "label.html", seed=2)
    tab.open(page_path)
    for k in range(len(wanted)):
        assert tab.text("#progress").startswith(f"Text {k + 1} of 4 \u00b7 {k} labelled")
        label = wanted[tab.text("#text")]
        if k == 0:
            # keys 1, 2, 3 are the page's labels in order: positive, neutral, negative
            tab.page.keyboard.press(str(("positive", "neutral", "negative").index(label) + 1))
        else:
            tab.page.click(f'button[data-label="{label}"]')
        if k == 1:
            tab.reload()  # the first two labels are kept
            assert tab.text("#progress").endswith("2 labelled")
    expected = [(text, LABEL_SCORES[label]) for text, label in wanted.items()]
    shown = tmp_path / "shown.json"
    shown.write_text(tab.text("#results"), encoding="utf-8")
    with tab.page.expect_download() as download:
        tab.page.click("#export")
    exported = tmp_path / "exported.json"
    download.value.save_as(exported)
    assert read_labels(shown) == read_labels(exported) == expected
