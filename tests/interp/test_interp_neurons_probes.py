"""Top activating examples (streamed) and linear probes with control tasks."""

from __future__ import annotations

import pytest
import torch
from bounds import check, seed

import gptscope.interp as gi


@pytest.fixture(scope="module")
def model_and_data(make_small_model):
    model = make_small_model()
    data = torch.randint(0, 50, (20, 12), generator=torch.Generator().manual_seed(2))
    return model, data


def _all_acts(model, data, name):
    _, cache = model.run_with_cache(data, names_filter=name)
    return cache[name].flatten(2)


def test_top_activating_examples_match_brute_force(model_and_data):
    model, data = model_and_data
    name = "blocks.1.mlp.hook_post"
    acts = _all_acts(model, data, name)[..., 17]
    exs = gi.top_activating_examples(model, data, name, unit=17, k=5, context=3, batch_size=6)
    top = acts.flatten().topk(5)
    assert [round(e.value, 5) for e in exs] == [round(v, 5) for v in top.values.tolist()]
    for e, i in zip(exs, top.indices.tolist()):
        assert (e.seq, e.pos) == divmod(i, 12)
        lo = max(0, e.pos - 3)
        assert torch.equal(e.tokens, data[e.seq, lo:e.pos + 3])
        assert e.activations[e.offset].item() == pytest.approx(e.value, abs=1e-5)


def test_top_examples_for_a_direction_from_an_iterable(model_and_data):
    model, data = model_and_data
    name = "blocks.0.hook_resid_post"
    d = torch.randn(32, generator=torch.Generator().manual_seed(0))
    values = _all_acts(model, data, name) @ d
    batches = (data[i:i + 4] for i in range(0, 20, 4))  # a generator: seen once
    exs = gi.top_activating_examples(model, batches, name, direction=d, k=3, largest=False)
    assert [round(e.value, 4) for e in exs] == [
        round(v, 4) for v in (-(-values.flatten()).topk(3).values).tolist()]


def test_top_examples_input_checks(model_and_data):
    model, data = model_and_data
    with pytest.raises(ValueError, match="exactly one"):
        gi.top_activating_examples(model, data, "blocks.0.hook_resid_post")
    with pytest.raises(ValueError, match="unknown hook"):
        gi.top_activating_examples(model, data, "blocks.0.hook_resid", unit=0)
    with pytest.raises(ValueError, match="outside"):
        gi.top_activating_examples(model, data, "blocks.0.hook_resid_post", unit=99)


def _linear_data(n=2000, d=16, n_classes=3, base_seed=0):
    g = torch.Generator().manual_seed(seed(base_seed))
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, n_classes, generator=g)
    return x, (x @ w).argmax(-1)


@pytest.mark.learned
@pytest.mark.parametrize("kind", ["logistic", "linear"])
def test_probe_reads_a_linear_label(kind):
    x, y = _linear_data()
    res = gi.train_probe(x, y, kind=kind, seed=seed(0))
    threshold = 0.95 if kind == "logistic" else 0.85  # least squares is a weaker classifier
    assert res.n_test == 400
    # measured over 30 runs: linear 0.915 to 0.957; logistic 0.978 to 0.99
    check(f"probe.{kind}_accuracy", res.accuracy, ">", threshold)
    # shuffled labels: near chance
    # measured over 30 runs: linear -0.0825 to -0.0025; logistic -0.08 to -0.005
    check(f"probe.{kind}_control_above_baseline", res.control_accuracy - res.baseline, "<", 0.1)
    # measured over 30 runs: linear 0.553 to 0.667; logistic 0.618 to 0.695
    check(f"probe.{kind}_selectivity", res.selectivity, ">", 0.5)
    # measured over 30 runs: linear 0.946 to 0.967; logistic 0.99 to 0.994
    check(f"probe.{kind}_accuracy_on_all_rows", (res.predict(x) == y).float().mean(), ">",
          threshold)


@pytest.mark.learned
def test_probe_on_shuffled_labels_is_near_chance():
    x, y = _linear_data(n_classes=2)
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed(1)))]
    res = gi.train_probe(x, y, seed=seed(0))
    # measured over 30 runs: 0.455 to 0.52
    check("probe.shuffled_accuracy", res.accuracy, "<", 0.6)
    # measured over 30 runs: 0.01 to 0.0575
    check("probe.shuffled_abs_selectivity", abs(res.selectivity), "<", 0.1)


@pytest.mark.learned
def test_type_control_catches_a_label_of_the_token_alone():
    """A label fixed by token identity is as learnable on the control task: no selectivity."""
    g = torch.Generator().manual_seed(seed(0))
    ids = torch.randint(0, 20, (3000,), generator=g)
    emb = torch.randn(20, 24, generator=g)
    label = torch.randint(0, 2, (20,), generator=g)[ids]
    res = gi.train_probe(emb[ids], label, control="type", token_ids=ids, seed=seed(0))
    # measured over 30 runs: 1 to 1
    check("probe.token_label_accuracy", res.accuracy, ">", 0.95)
    # measured over 30 runs: 1 to 1
    check("probe.token_label_type_control_accuracy", res.control_accuracy, ">", 0.9)
    # measured over 30 runs: 0 to 0
    check("probe.token_label_selectivity", res.selectivity, "<", 0.1)


@pytest.mark.learned
def test_linear_probe_regression_r2():
    x, _ = _linear_data()
    y = x[:, 0] * 2 + 0.1 * torch.randn(len(x), generator=torch.Generator().manual_seed(seed(3)))
    res = gi.train_probe(x, y, kind="linear", seed=seed(0))
    assert res.metric == "r2"
    # measured over 30 runs: 0.997 to 0.998
    check("probe.regression_r2", res.accuracy, ">", 0.95)
    # measured over 30 runs: -0.0224 to -0.0128
    check("probe.regression_control_r2", res.control_accuracy, "<", 0.05)


def test_probe_input_checks():
    x, y = _linear_data()
    with pytest.raises(ValueError, match="\\[n, d\\]"):
        gi.train_probe(x[None], y)
    with pytest.raises(ValueError, match="labels"):
        gi.train_probe(x, y[:5])
    with pytest.raises(ValueError, match="token_ids"):
        gi.train_probe(x, y, control="type")
    with pytest.raises(ValueError, match="kind='linear'"):
        gi.train_probe(x, y.float())
