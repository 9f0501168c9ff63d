"""Offline pages for judging samples by hand: blind A/B rating and labelling for the reward model.

``write_rating_page`` writes one self-contained HTML file (no network: its CSS, JavaScript and
data are inline) that shows, one prompt at a time, two samples side by side. Which model's
sample is on the left is shuffled per item by ``seed``, balanced so that each model sits on
the left for half the items (a reader's taste for the left-hand answer then cancels out). The
page never names the models until the learner presses "Reveal": only then does it show the
win rate of A against B and which side was which. Choices are kept in the browser's
``localStorage`` under a key made from the page's contents, so a reload (or a second visit)
carries on where the learner stopped. The page's source does hold the mapping: the page is
blind to an honest reader, not to one who opens the source.

``write_labelling_page`` uses the same machinery to put one label on each of a list of texts
(shown in an order shuffled by ``seed``), for a reward model trained on absolute labels; each
label stands for a soft score, ``LABEL_SCORES``.

Both pages show their results JSON in ``<pre id="results">`` (the rating page only after the
reveal, so it stays blind) and download it with "Export JSON". The readers below take that
file; each record carries its own texts, so the page is not needed to read it.

The rating export (``"kind": "rating"``)::

    {"kind": "rating", "version": 1, "page_id": "<16 hex digits>", "title": "...",
     "name_a": "A", "name_b": "B", "seed": 0, "n_items": 4,
     "ratings": [{"item": 0, "prompt": "...", "a": "<sample of A>", "b": "<sample of B>",
                  "left": "a" | "b", "winner": "a" | "b" | "tie"}, ...]}

``ratings`` lists the rated items only, in page order; ``item`` is the item's index in the
``items`` given to ``write_rating_page`` and ``left`` says which model's sample was on the left.

The labelling export (``"kind": "labels"``)::

    {"kind": "labels", "version": 1, "page_id": "<16 hex digits>", "title": "...",
     "labels": ["positive", "neutral", "negative"], "n_items": 3,
     "records": [{"index": 0, "text": "...", "label": "positive"}, ...]}

``records`` lists the labelled texts only, in the order of the ``texts`` given
(``index``); a label is one of ``LABEL_SCORES``.

``ratings_to_preferences`` turns a rating export into ``{"prompt", "chosen", "rejected"}``
records (ties dropped) and ``write_preferences`` writes them as the JSONL file the DPO and
reward-model trainers read. ``chosen`` and ``rejected`` are the samples exactly as given to
the page: continuations of ``prompt``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptscope.align.reward import SENTIMENT_SCORES
from gptscope.utils.atomic import write_text
from gptscope.utils.files import read_json_object
from gptscope.viz.html import escape, json_for_script, page

# The soft score a reward model is trained towards for each label of the labelling page.
LABEL_SCORES = SENTIMENT_SCORES  # one table: what a label means to the reward model
WINNERS = ("a", "b", "tie")
FORMAT_VERSION = 1
Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval

_RATE_FIX = ("export it from the rating page (Export JSON after Reveal), or copy the text "
             "under Results into a .json file")
_LABEL_FIX = ("export it from the labelling page (Export JSON), or copy the text under "
              "Results into a .json file")


# ---------------------------------------------------------------- checking the inputs


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _checked_out(out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"out={str(out)!r} is a directory; give a file path such as "
                         f"{str(path / 'rate.html')!r}")
    return path


def _checked_items(items: Sequence[Sequence[str]]) -> list[tuple[str, str, str]]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise ValueError(f"items={_short(items)} must be a non-empty list of (prompt, "
                         "sample_a, sample_b) string triples; sample both runs first")
    checked = []
    for i, item in enumerate(items):
        if (isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 3
                or not all(isinstance(s, str) for s in item)):
            raise ValueError(f"items[{i}]={_short(item)} is not three strings; each item is "
                             "(prompt, sample_a, sample_b)")
        checked.append((item[0], item[1], item[2]))
    return checked


def _checked_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence) or not texts:
        raise ValueError(f"texts={_short(texts)} must be a non-empty list of strings")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}]={_short(text)} is not a string; pass the texts "
                             "to label as str")
    return list(texts)


def _checked_labels(labels: Sequence[str]) -> list[str]:
    known = ", ".join(LABEL_SCORES)
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise ValueError(f"labels={_short(labels)} must be a non-empty list of names from "
                         f"{known}")
    for label in labels:
        if label not in LABEL_SCORES:
            raise ValueError(f"labels holds {_short(label)}, which has no score; use names "
                             f"from LABEL_SCORES: {known}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels={_short(labels)} names a label twice; give each once")
    return list(labels)


def _checked_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={_short(seed)} must be an int (it picks the shuffle)")
    return seed


def _checked_names(name_a: str, name_b: str) -> None:
    for arg, name in (("name_a", name_a), ("name_b", name_b)):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{arg}={_short(name)} must be a non-empty string naming the "
                             "model (the run folder's name, say)")
    if name_a == name_b:
        raise ValueError(f"name_a and name_b are both {name_a!r}; give the two models "
                         "different names so the reveal can tell them apart")


def _checked_title(title: str) -> str:
    if not isinstance(title, str):
        raise ValueError(f"title={_short(title)} must be a string")
    return title


# ---------------------------------------------------------------- shuffles and statistics


def left_models(n_items: int, seed: int = 0) -> list[str]:
    """Which model's sample goes on the left for each of ``n_items`` items: "a" or "b".

    Each model gets the left side for half the items (the odd one out, if any, drawn too),
    in an order shuffled by ``random.Random(seed)``: the same seed gives the same sides.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 0:
        raise ValueError(f"n_items={_short(n_items)} must be a non-negative int")
    rng = random.Random(_checked_seed(seed))
    sides = ["a", "b"] * (n_items // 2)
    if n_items % 2:
        sides.append(rng.choice(("a", "b")))
    rng.shuffle(sides)
    return sides


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``successes / n`` (default: 95%).

    ``successes`` may be fractional (a tie counts as half a win). Unlike the normal
    approximation it stays inside [0, 1] and is sensible at 0 or n successes and small n.
    """
    if n <= 0:
        raise ValueError(f"n={n} must be positive: an interval needs at least one rating")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RatingResult:
    """The outcome of a blind rating: counts, A's win rate and its 95% Wilson interval.

    ``win_rate_a`` counts a tie as half a win for each side; ``interval`` is Wilson's score
    interval for it (``wilson_interval``), treating the n ratings as independent trials.
    """

    n: int
    wins_a: int
    wins_b: int
    ties: int
    win_rate_a: float
    interval: tuple[float, float]
    name_a: str = "A"
    name_b: str = "B"
    n_items: int | None = None  # items on the page, when the file says (n may be fewer)

    def describe(self) -> str:
        """One line: who won how often, A's win rate and its interval."""
        low, high = self.interval
        of = f" of {self.n_items} items" if self.n_items not in (None, self.n) else ""
        return (f"{self.name_a} vs {self.name_b}: {self.name_a} won {self.wins_a}, "
                f"{self.name_b} won {self.wins_b}, {self.ties} tie{'' if self.ties == 1 else 's'} "
                f"over n={self.n} rated{of}; "
                f"win rate of {self.name_a} {self.win_rate_a:.3f} (ties half), "
                f"95% Wilson interval {low:.3f}-{high:.3f}")


def _page_id(data: dict[str, Any]) -> str:
    # The same page written twice gets the same id, so its saved choices still apply;
    # any change to the items, names, seed or title gives a fresh one.
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------- the pages

_CSS = """
.rt-app { --rt-line: #d8dee6; --rt-muted: #5f6b7a; --rt-accent: #1f6fb4; }
.rt-progress { color: var(--rt-muted); font-size: 14px; margin: 10px 0; }
.rt-label { font-size: 12px; font-weight: 600; color: var(--rt-muted); text-transform: uppercase;
  letter-spacing: .04em; margin: 12px 0 4px; }
.rt-text { white-space: pre-wrap; word-break: break-word; margin: 0; padding: 10px 12px;
  border: 1px solid var(--rt-line); border-radius: 6px; background: #fafbfc;
  font: 14px/1.5 ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.rt-text:empty::before { content: "(empty)"; color: var(--rt-muted); font-style: italic; }
.rt-pair { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
.rt-buttons, .rt-nav, .rt-tools { display: flex; gap: 10px; flex-wrap: wrap; margin: 14px 0; }
.rt-app button { font: inherit; padding: 6px 14px; border: 1px solid var(--rt-line);
  border-radius: 6px; background: #fff; cursor: pointer; }
.rt-app button:disabled { opacity: .45; cursor: default; }
.rt-app button.rt-choice[aria-pressed="true"] { border-color: var(--rt-accent);
  background: #e8f1fa; font-weight: 600; }
.rt-outcome { border-top: 1px solid var(--rt-line); margin-top: 18px; padding-top: 6px; }
.rt-outcome table { border-collapse: collapse; font-size: 13px; }
.rt-outcome td, .rt-outcome th { border-bottom: 1px solid #eef1f4; padding: 3px 10px;
  text-align: left; }
.rt-note { color: var(--rt-muted); font-size: 13px; }
#results:empty { display: none; }
"""

_TOOLS_HTML = """
<div class="rt-tools">
<button type="button" id="export" disabled>Export JSON</button>
<button type="button" id="reset">Start over</button>
</div>
<p class="rt-note" id="storage-note" hidden>This browser does not keep the choices between
visits: export them before closing the page.</p>
<pre class="rt-text" id="results"></pre>
"""


def _page_html(title: str, intro: str, app: str, data: dict[str, Any], js: str) -> str:
    body = (f"<style>{_CSS}</style>\n<h1>{escape(title)}</h1>\n"
            f'<p class="gs-meta">{intro}</p>\n<div class="rt-app" id="rt-app">{app}'
            f"{_TOOLS_HTML}</div>\n"
            f'<script type="application/json" id="rt-data">{json_for_script(data)}</script>\n'
            f"<script>(function () {{\n\"use strict\";\n{_COMMON_JS}\n{js}\n}})();</script>")
    return page(title, body)


_RATING_INTRO = (
    "Two models continued each prompt. Their samples are shown in a shuffled order, without "
    "names: pick the better one (keys 1 or &larr; for left, 2 or &rarr; for right, 3 or "
    "&darr; for a tie). Your choices stay in this browser. Reveal shows the win rate and which "
    "model wrote which sample; after it the choices are final.")

_RATING_APP = """
<div class="rt-progress" id="progress"></div>
<div class="rt-label">Prompt</div><pre class="rt-text" id="prompt"></pre>
<div class="rt-pair">
<div><div class="rt-label" id="left-label">Left</div><pre class="rt-text" id="left"></pre></div>
<div><div class="rt-label" id="right-label">Right</div><pre class="rt-text" id="right"></pre></div>
</div>
<div class="rt-buttons">
<button type="button" class="rt-choice" id="choose-left" data-choice="left">
Left is better [1]</button>
<button type="button" class="rt-choice" id="choose-right" data-choice="right">
Right is better [2]</button>
<button type="button" class="rt-choice" id="choose-tie" data-choice="tie">Tie [3]</button>
</div>
<div class="rt-nav">
<button type="button" id="prev">&larr; Previous</button>
<button type="button" id="next">Next &rarr;</button>
<button type="button" id="reveal" disabled>Reveal</button>
</div>
<section class="rt-outcome" id="outcome" hidden>
<h2>Result</h2>
<p id="win-rate"></p>
<table id="mapping"><thead><tr><th>#</th><th>left</th><th>right</th><th>your choice</th>
<th>winner</th></tr></thead><tbody></tbody></table>
</section>
"""


def write_rating_page(items: Sequence[tuple[str, str, str]], out: str | os.PathLike[str], *,
                      name_a: str = "A", name_b: str = "B", seed: int = 0,
                      title: str = "Blind rating: which sample is better?") -> Path:
    """Write the blind A/B rating page for ``items`` (``(prompt, sample_a, sample_b)``) to
    ``out``; returns its path. See the module docstring for what the page records."""
    checked = _checked_items(items)
    out_path = _checked_out(out)
    _checked_names(name_a, name_b)
    title = _checked_title(title)
    lefts = left_models(len(checked), _checked_seed(seed))
    data: dict[str, Any] = {
        "kind": "rating", "version": FORMAT_VERSION, "title": title, "name_a": name_a,
        "name_b": name_b, "seed": seed,
        "items": [{"prompt": p, "a": a, "b": b, "left": left}
                  for (p, a, b), left in zip(checked, lefts)],
    }
    data["page_id"] = _page_id(data)
    return write_text(out_path, _page_html(title, _RATING_INTRO, _RATING_APP, data, _RATING_JS))


_LABELLING_INTRO = (
    "Give each text the label that fits it (keys 1, 2, 3 ... in the order of the buttons). "
    "Your labels stay in this browser; Export JSON saves them for "
    "<code>gptscope align rm --labels FILE</code>.")


def _labelling_app(labels: list[str]) -> str:
    buttons = "\n".join(
        f'<button type="button" class="rt-choice" data-label="{escape(label)}">'
        f"{escape(label)} [{k}]</button>" for k, label in enumerate(labels, 1))
    return ('\n<div class="rt-progress" id="progress"></div>\n'
            '<div class="rt-label">Text</div><pre class="rt-text" id="text"></pre>\n'
            f'<div class="rt-buttons" id="label-buttons">\n{buttons}\n</div>\n'
            '<div class="rt-nav">\n<button type="button" id="prev">&larr; Previous</button>\n'
            '<button type="button" id="next">Next &rarr;</button>\n</div>\n')


def write_labelling_page(texts: Sequence[str], out: str | os.PathLike[str], *,
                         labels: Sequence[str] = ("positive", "neutral", "negative"),
                         seed: int = 0, title: str = "Label the texts") -> Path:
    """Write a page that puts one of ``labels`` (names from ``LABEL_SCORES``) on each text,
    the texts shown in an order shuffled by ``seed``; returns its path."""
    checked = _checked_texts(texts)
    out_path = _checked_out(out)
    names = _checked_labels(labels)
    title = _checked_title(title)
    order = list(range(len(checked)))
    random.Random(_checked_seed(seed)).shuffle(order)
    data: dict[str, Any] = {
        "kind": "labels", "version": FORMAT_VERSION, "title": title, "labels": names,
        "seed": seed, "items": [{"index": i, "text": checked[i]} for i in order],
    }
    data["page_id"] = _page_id(data)
    app = _labelling_app(names)
    return write_text(out_path, _page_html(title, _LABELLING_INTRO, app, data, _LABELLING_JS))


# ---------------------------------------------------------------- reading the exports


def _read_export(path: str | os.PathLike[str], kind: str, fix: str) -> dict[str, Any]:
    """The JSON object of an export of ``kind``, its version checked."""
    what = "rating" if kind == "rating" else "labelling"
    if not Path(path).is_file():
        raise ValueError(f"{what} results file {str(path)!r} does not exist; {fix}")
    data = read_json_object(path, fix)
    if data.get("kind") != kind:
        other = "read_labels" if kind == "rating" else "read_ratings"
        raise ValueError(f"{path} holds kind {_short(data.get('kind'))}, not {kind!r}; it is "
                         f"not a {what} page's export ({other} reads the other kind)")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} is version {_short(data.get('version'))} of the {what} "
                         f"format; this gptscope reads version {FORMAT_VERSION}: {fix} again")
    return data


def _records(data: dict[str, Any], key: str, path: Any, fix: str, empty_fix: str
             ) -> list[dict[str, Any]]:
    records = data.get(key)
    if not isinstance(records, list):
        raise ValueError(f"{path} needs a list under {key!r}, got {_short(records)}; {fix}")
    if not records:
        raise ValueError(f"{path} holds no {key}: the list is empty; {empty_fix}")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: {key}[{i}] is {_short(rec)}, not an object; {fix}")
    return records


def _string_field(rec: dict[str, Any], field: str, where: str) -> str:
    value = rec.get(field)
    if not isinstance(value, str):
        raise ValueError(f"{where} needs a string {field!r}, got {_short(value)}; export the "
                         "file from the page again")
    return value


def _rating_records(path: str | os.PathLike[str]
                    ) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """The export and its (prompt, a, b, winner) records, every one checked."""
    data = _read_export(path, "rating", _RATE_FIX)
    records = _records(data, "ratings", path, _RATE_FIX,
                       "rate at least one item on the page before exporting")
    out = []
    for i, rec in enumerate(records):
        where = f"{path}: ratings[{i}]"
        prompt, a, b = (_string_field(rec, f, where) for f in ("prompt", "a", "b"))
        winner = rec.get("winner")
        if winner not in WINNERS:
            raise ValueError(f"{where} has winner {_short(winner)}; it must be one of "
                             f"{', '.join(map(repr, WINNERS))}")
        out.append((prompt, a, b, winner))
    return data, out


def read_ratings(path: str | os.PathLike[str]) -> RatingResult:
    """Count a rating page's export: wins of A and B, ties, A's win rate (a tie counts half)
    and its 95% Wilson score interval (``wilson_interval``)."""
    data, records = _rating_records(path)
    winners = [w for *_, w in records]
    n, wins_a, wins_b, ties = (len(winners), winners.count("a"), winners.count("b"),
                               winners.count("tie"))
    score = wins_a + 0.5 * ties
    names = [data.get(k) if isinstance(data.get(k), str) else d
             for k, d in (("name_a", "A"), ("name_b", "B"))]
    n_items = data.get("n_items")
    return RatingResult(n=n, wins_a=wins_a, wins_b=wins_b, ties=ties, win_rate_a=score / n,
                        interval=wilson_interval(score, n), name_a=names[0], name_b=names[1],
                        n_items=n_items if isinstance(n_items, int) else None)


def ratings_to_preferences(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """``{"prompt", "chosen", "rejected"}`` records from a rating export, ties dropped (a tie
    says neither sample is preferred)."""
    _, records = _rating_records(path)
    pairs = []
    for prompt, a, b, winner in records:
        if winner != "tie":
            chosen, rejected = (a, b) if winner == "a" else (b, a)
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs


def write_preferences(records: Iterable[dict[str, str]], path: str | os.PathLike[str]) -> Path:
    """Write preference records as JSONL (one ``{"prompt", "chosen", "rejected"}`` object a
    line), atomically; returns the path. The DPO and reward-model trainers read this file."""
    out_path = _checked_out(path)
    lines = []
    for i, rec in enumerate(records):
        if not (isinstance(rec, dict) and all(isinstance(rec.get(k), str)
                                              for k in ("prompt", "chosen", "rejected"))):
            raise ValueError(f"records[{i}]={_short(rec)} needs string fields prompt, chosen "
                             "and rejected")
        lines.append(json.dumps({k: rec[k] for k in ("prompt", "chosen", "rejected")},
                                ensure_ascii=False))
    if not lines:
        raise ValueError("records is empty, so there is nothing to write; every rating was "
                         "a tie or none was made: rate more items")
    return write_text(out_path, "\n".join(lines) + "\n")


def read_labels(path: str | os.PathLike[str]) -> list[tuple[str, float]]:
    """``(text, score)`` for each labelled text of a labelling export, in the order of the
    texts given to the page; a label's score is ``LABEL_SCORES[label]``."""
    data = _read_export(path, "labels", _LABEL_FIX)
    records = _records(data, "records", path, _LABEL_FIX,
                       "label at least one text on the page before exporting")
    out = []
    for i, rec in enumerate(records):
        where = f"{path}: records[{i}]"
        text = _string_field(rec, "text", where)
        label = rec.get("label")
        if label not in LABEL_SCORES:
            raise ValueError(f"{where} has label {_short(label)}, which has no score; labels "
                             f"are {', '.join(map(repr, LABEL_SCORES))}")
        out.append((text, LABEL_SCORES[label]))
    return out


# ---------------------------------------------------------------- the pages' JavaScript
# Every text from the data goes into the page through textContent, never innerHTML, so a
# sample holding markup shows as the characters it is.

_COMMON_JS = r"""
var data = JSON.parse(document.getElementById("rt-data").textContent);
var items = data.items, n = items.length;
function byId(id) { return document.getElementById(id); }
// Both pages keep their place in ``state.at`` and define save() and render().
function go(step) {
  state.at = Math.min(n - 1, Math.max(0, state.at + step));
  save();
  render();
}

// localStorage can be missing or refused (privacy settings, some file:// setups): the
// choices then live as long as the tab, and the page says so.
function openStore(key) {
  try {
    var ls = window.localStorage;
    ls.setItem(key + ".probe", "1");
    ls.removeItem(key + ".probe");
    return {
      persistent: true,
      load: function () {
        try { return JSON.parse(ls.getItem(key) || "null"); } catch (e) { return null; }
      },
      save: function (state) { ls.setItem(key, JSON.stringify(state)); },
      clear: function () { ls.removeItem(key); }
    };
  } catch (e) {
    var kept = null;
    return {
      persistent: false,
      load: function () { return kept; },
      save: function (state) { kept = JSON.parse(JSON.stringify(state)); },
      clear: function () { kept = null; }
    };
  }
}
var store = openStore("gptscope.rate." + data.kind + "." + data.page_id);
if (!store.persistent) byId("storage-note").hidden = false;

function countKeys(obj) { return Object.keys(obj).length; }
function nextOpen(chosen, from) {
  // The first item without a choice after `from` (wrapping round), or `from` if none is left.
  for (var k = 1; k <= n; k++) {
    var i = (from + k) % n;
    if (!(i in chosen)) return i;
  }
  return from;
}
function download(name, text) {
  var url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  var link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(function () { URL.revokeObjectURL(url); }, 2000);
}
function typing(ev) {
  var t = ev.target && ev.target.tagName;
  return ev.ctrlKey || ev.metaKey || ev.altKey || t === "INPUT" || t === "TEXTAREA" ||
    t === "SELECT";
}
// "Start over" asks for a second click instead of a confirm() dialog.
function armReset(onConfirm) {
  var button = byId("reset"), armed = false, timer = null;
  button.addEventListener("click", function () {
    if (armed) {
      clearTimeout(timer);
      armed = false;
      button.textContent = "Start over";
      onConfirm();
      return;
    }
    armed = true;
    button.textContent = "Click again to erase every choice";
    timer = setTimeout(function () { armed = false; button.textContent = "Start over"; }, 4000);
  });
}
function startAt(saved, chosen) {
  var at = saved && saved.at;
  if (typeof at === "number" && at >= 0 && at < n && Math.floor(at) === at) return at;
  return 0 in chosen ? nextOpen(chosen, 0) : 0;
}
"""

_RATING_STATE_JS = r"""
var SIDES = { left: true, right: true, tie: true };
var Z = 1.959963984540054;
var state = loadState();

function loadState() {
  var saved = store.load() || {}, chosen = {}, kept = saved.choices || {};
  for (var i = 0; i < n; i++) if (SIDES[kept[i]] === true) chosen[i] = kept[i];
  return { choices: chosen, at: startAt(saved, chosen),
           revealed: saved.revealed === true && countKeys(chosen) > 0 };
}
function other(model) { return model === "a" ? "b" : "a"; }
function winnerOf(i) {
  var side = state.choices[i];
  if (side === "tie") return "tie";
  return side === "left" ? items[i].left : other(items[i].left);
}
function nameOf(model) { return model === "a" ? data.name_a + " (A)" : data.name_b + " (B)"; }
function wilson(score, count) {
  var p = score / count, z2 = Z * Z;
  var centre = (p + z2 / (2 * count)) / (1 + z2 / count);
  var half = Z * Math.sqrt(p * (1 - p) / count + z2 / (4 * count * count)) / (1 + z2 / count);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
function tally() {
  var t = { n: 0, a: 0, b: 0, tie: 0 };
  for (var i = 0; i < n; i++) if (i in state.choices) { t.n++; t[winnerOf(i)]++; }
  t.rate = t.n ? (t.a + 0.5 * t.tie) / t.n : NaN;
  t.interval = t.n ? wilson(t.a + 0.5 * t.tie, t.n) : [NaN, NaN];
  return t;
}
function results() {
  var ratings = [];
  for (var i = 0; i < n; i++) {
    if (!(i in state.choices)) continue;
    var it = items[i];
    ratings.push({ item: i, prompt: it.prompt, a: it.a, b: it.b, left: it.left,
                   winner: winnerOf(i) });
  }
  return { kind: "rating", version: data.version, page_id: data.page_id, title: data.title,
           name_a: data.name_a, name_b: data.name_b, seed: data.seed, n_items: n,
           ratings: ratings };
}
function save() {
  store.save({ choices: state.choices, at: state.at, revealed: state.revealed });
}
function choose(side) {
  if (state.revealed) return;
  state.choices[state.at] = side;
  state.at = nextOpen(state.choices, state.at);
  save();
  render();
}
"""

_RATING_VIEW_JS = r"""
function renderItem() {
  var it = items[state.at], side = state.choices[state.at];
  var rated = countKeys(state.choices);
  byId("progress").textContent = "Item " + (state.at + 1) + " of " + n + " \u00b7 " + rated +
    " rated";
  byId("prompt").textContent = it.prompt;
  byId("left").textContent = it[it.left];
  byId("right").textContent = it[other(it.left)];
  byId("left-label").textContent = state.revealed ? "Left: " + nameOf(it.left) : "Left";
  byId("right-label").textContent = state.revealed ? "Right: " + nameOf(other(it.left))
                                                   : "Right";
  ["left", "right", "tie"].forEach(function (s) {
    var button = byId("choose-" + s);
    button.setAttribute("aria-pressed", String(side === s));
    button.disabled = state.revealed;
  });
  byId("prev").disabled = state.at === 0;
  byId("next").disabled = state.at === n - 1;
  var reveal = byId("reveal");
  reveal.disabled = state.revealed || rated === 0;
  reveal.textContent = rated === n ? "Reveal the result"
                                   : "Reveal now (" + rated + " of " + n + " rated)";
}
function fmt(x) { return x.toFixed(3); }
function renderOutcome() {
  var t = tally(), line = byId("win-rate"), body = byId("mapping").tBodies[0];
  line.textContent = nameOf("a") + " won " + t.a + ", " + nameOf("b") + " won " + t.b +
    ", " + t.tie + " ties over n = " + t.n + " rated" + (t.n < n ? " (of " + n + ")" : "") +
    ". Win rate of " + data.name_a + ": " + fmt(t.rate) + " (ties count half), 95% " +
    "Wilson interval " + fmt(t.interval[0]) + "\u2013" + fmt(t.interval[1]) + ".";
  line.dataset.n = t.n;
  line.dataset.winsA = t.a;
  line.dataset.winsB = t.b;
  line.dataset.ties = t.tie;
  line.dataset.winRateA = t.rate;
  body.textContent = "";
  for (var i = 0; i < n; i++) {
    if (!(i in state.choices)) continue;
    var row = body.insertRow(), it = items[i], w = winnerOf(i);
    [String(i + 1), nameOf(it.left), nameOf(other(it.left)), state.choices[i],
     w === "tie" ? "tie" : nameOf(w)].forEach(function (text) {
      row.insertCell().textContent = text;
    });
  }
}
function render() {
  renderItem();
  byId("outcome").hidden = !state.revealed;
  byId("export").disabled = !state.revealed;
  if (state.revealed) renderOutcome();
  // The results name which model wrote which sample, so they wait for the reveal.
  byId("results").textContent = state.revealed ? JSON.stringify(results(), null, 2) : "";
  document.body.dataset.rateState = state.revealed ? "revealed" : "rating";
  document.body.dataset.rated = String(countKeys(state.choices));
}

document.querySelectorAll("button[data-choice]").forEach(function (button) {
  button.addEventListener("click", function () { choose(button.dataset.choice); });
});
byId("prev").addEventListener("click", function () { go(-1); });
byId("next").addEventListener("click", function () { go(1); });
byId("reveal").addEventListener("click", function () {
  if (countKeys(state.choices) === 0) return;
  state.revealed = true;
  save();
  render();
});
byId("export").addEventListener("click", function () {
  if (state.revealed) download("ratings-" + data.page_id + ".json",
                               JSON.stringify(results(), null, 2) + "\n");
});
armReset(function () {
  store.clear();
  state = { choices: {}, at: 0, revealed: false };
  render();
});
var KEYS = { "1": "left", ArrowLeft: "left", "2": "right", ArrowRight: "right",
             "3": "tie", ArrowDown: "tie" };
document.addEventListener("keydown", function (ev) {
  if (typing(ev) || !(ev.key in KEYS)) return;
  ev.preventDefault();
  choose(KEYS[ev.key]);
});
render();
document.body.dataset.rtReady = "1";
"""
_RATING_JS = _RATING_STATE_JS + _RATING_VIEW_JS

_LABELLING_JS = r"""
var LABELS = data.labels;
var state = loadState();

function loadState() {
  var saved = store.load() || {}, chosen = {}, kept = saved.labels || {};
  for (var i = 0; i < n; i++) if (LABELS.indexOf(kept[i]) >= 0) chosen[i] = kept[i];
  return { labels: chosen, at: startAt(saved, chosen) };
}
function results() {
  var records = [];
  for (var i = 0; i < n; i++) {
    if (i in state.labels) {
      records.push({ index: items[i].index, text: items[i].text, label: state.labels[i] });
    }
  }
  records.sort(function (x, y) { return x.index - y.index; });
  return { kind: "labels", version: data.version, page_id: data.page_id, title: data.title,
           labels: LABELS, n_items: n, records: records };
}
function save() { store.save({ labels: state.labels, at: state.at }); }
function choose(label) {
  state.labels[state.at] = label;
  state.at = nextOpen(state.labels, state.at);
  save();
  render();
}
function render() {
  var done = countKeys(state.labels), current = state.labels[state.at];
  byId("progress").textContent = "Text " + (state.at + 1) + " of " + n + " \u00b7 " + done +
    " labelled";
  byId("text").textContent = items[state.at].text;
  document.querySelectorAll("button[data-label]").forEach(function (button) {
    button.setAttribute("aria-pressed", String(button.dataset.label === current));
  });
  byId("prev").disabled = state.at === 0;
  byId("next").disabled = state.at === n - 1;
  byId("export").disabled = done === 0;
  byId("results").textContent = done ? JSON.stringify(results(), null, 2) : "";
  document.body.dataset.labelled = String(done);
}

document.querySelectorAll("button[data-label]").forEach(function (button) {
  button.addEventListener("click", function () { choose(button.dataset.label); });
});
byId("prev").addEventListener("click", function () { go(-1); });
byId("next").addEventListener("click", function () { go(1); });
byId("export").addEventListener("click", function () {
  if (countKeys(state.labels)) download("labels-" + data.page_id + ".json",
                                        JSON.stringify(results(), null, 2) + "\n");
});
armReset(function () {
  store.clear();
  state = { labels: {}, at: 0 };
  render();
});
document.addEventListener("keydown", function (ev) {
  var k = parseInt(ev.key, 10);
  if (typing(ev) || !(k >= 1 && k <= LABELS.length) || String(k) !== ev.key) return;
  ev.preventDefault();
  choose(LABELS[k - 1]);
});
render();
document.body.dataset.rtReady = "1";
"""
