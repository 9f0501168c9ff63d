"""Distribution shift on the stories model, measured beyond accuracy: next-token
calibration on the corpus and on shifted text, and how well the model's own confidence
tells the two apart (out-of-distribution detection).

Shifted stories keep the grammar but change what the corpus never varies: subjects with two
adjectives ("the big red dog"), names the corpus never uses, and sentences glued into
longer runs than its stories. `shift_report` scores a model on both.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from gptscope.data.stories import NEUTRAL_ADJECTIVES, stories_text
from gptscope.evals.calibration import expected_calibration_error, next_token_confidence
from gptscope.evals.ood import auroc, energy_score, fpr_at_tpr, max_softmax_score

UNSEEN_NAMES = ("oliver", "hazel", "arlo", "nina", "otto", "wren", "felix", "iris")


def _sentences(n: int, seed: int) -> list[str]:
    text = stories_text(max(4, n // 3), seed=seed)
    return [s.strip() + "." for s in text.split(".") if s.strip()][:n]


def shifted_sentence(sentence: str, rng: random.Random) -> str:
    """The corpus sentence with each name swapped for an unseen one (the same one wherever
    it recurs) and two adjectives added after its first "the"."""
    from gptscope.data.stories import NAMES

    words = sentence.split(" ")
    names = sorted({w.rstrip(",.") for w in words} & set(NAMES))
    # One unseen name per name, so "when mary and tom ..., tom gave ... to mary" keeps
    # which name repeats (the IOI structure).
    new = dict(zip(names, rng.sample(UNSEEN_NAMES, len(names)), strict=True))
    words = [new[w.rstrip(",.")] + w[len(w.rstrip(",.")):] if w.rstrip(",.") in new else w
             for w in words]
    if "the" in words[:-1]:
        at = words.index("the") + 1
        words[at:at] = rng.sample(NEUTRAL_ADJECTIVES, 2)
    return " ".join(words)


def stories_and_shifted(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` corpus sentences (seeded) and ``n`` shifted ones made from other sentences."""
    rng = random.Random(seed)
    return _sentences(n, seed + 1), [shifted_sentence(s, rng) for s in _sentences(n, seed + 2)]


@torch.no_grad()
def _per_text(model: Any, texts: list[str]) -> tuple[list[Any], list[float], list[float]]:
    """Per text: (confidence, correct) of every next-token prediction, and the mean
    max-softmax and energy score over its positions."""
    conf_pairs, msp, energy = [], [], []
    for text in texts:
        ids = torch.tensor([model.tokenizer.encode(text)], device=model.device)
        logits = model(ids).double()  # [1, pos, d_vocab]
        conf_pairs.append(next_token_confidence(logits, ids))
        msp.append(float(max_softmax_score(logits[0, :-1]).mean()))
        energy.append(float(energy_score(logits[0, :-1]).mean()))
    return conf_pairs, msp, energy


def shift_report(model: Any, n: int = 200, seed: int = 0) -> dict[str, float]:
    """Next-token accuracy and ECE (equal-width and equal-mass, 15 bins) on corpus and
    shifted sentences, and the AUROC and FPR@95%TPR of flagging shifted sentences by low
    mean max-softmax or low mean energy (in-distribution = positive)."""
    clean, shifted = stories_and_shifted(n, seed)
    out: dict[str, float] = {}
    scores = {}
    for split, texts in (("stories", clean), ("shifted", shifted)):
        pairs, msp, energy = _per_text(model, texts)
        conf = torch.cat([c for c, _ in pairs])
        right = torch.cat([r for _, r in pairs])
        out[f"{split}_accuracy"] = float(right.double().mean())
        out[f"{split}_ece"] = expected_calibration_error(conf, right, 15)
        out[f"{split}_ece_mass"] = expected_calibration_error(conf, right, 15, "mass")
        scores[split] = (msp, energy)
    labels = torch.tensor([1] * len(clean) + [0] * len(shifted))
    for k, name in enumerate(("max_softmax", "energy")):
        s = torch.tensor(scores["stories"][k] + scores["shifted"][k], dtype=torch.float64)
        out[f"{name}_auroc"] = auroc(s, labels)
        out[f"{name}_fpr95"] = fpr_at_tpr(s, labels)
    return out
