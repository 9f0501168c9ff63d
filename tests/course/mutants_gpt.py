"""More wrong answers to lessons 6 and 7: the switches of gpt_forward, the replayed
train_loop and parameter counts over random configs.

Each is (wrong function, phrase its check must say); mutants.py adds them to MUTANTS.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from gptscope.course.solutions import lesson06_gpt as s06
from gptscope.course.solutions import lesson07_real_models as s07

# -- lesson 6: gpt_forward


def _with_cfg(cfg, **changes):
    return dataclasses.replace(cfg, **changes)


def gpt_ignores_eps(tokens, params, cfg):
    return s06.gpt_forward(tokens, params, _with_cfg(cfg, eps=1e-5))


def gpt_scale_from_d_model(tokens, params, cfg):
    # Scores divided by sqrt(d_model / n_heads): the same as queries scaled by the ratio.
    ratio = (cfg.d_head / (cfg.d_model // cfg.n_heads)) ** 0.5
    p = dict(params)
    for i in range(cfg.n_layers):
        p[f"blocks.{i}.attn.W_Q"] = p[f"blocks.{i}.attn.W_Q"] * ratio
        p[f"blocks.{i}.attn.b_Q"] = p[f"blocks.{i}.attn.b_Q"] * ratio
    return s06.gpt_forward(tokens, p, cfg)


def gpt_always_mlp(tokens, params, cfg):
    return s06.gpt_forward(tokens, params, _with_cfg(cfg, attn_only=False))


def gpt_never_tied(tokens, params, cfg):
    return s06.gpt_forward(tokens, params, _with_cfg(cfg, tie_embeddings=False))


def gpt_two_blocks_always(tokens, params, cfg):
    return s06.gpt_forward(tokens, params, _with_cfg(cfg, n_layers=2))


# -- lesson 6: train_loop


def _loop(model, data, steps, batch_size, lr, seed, fresh=False, same_rows=False,
          opt_cls=torch.optim.AdamW):
    optimizer, g = opt_cls(model.parameters(), lr=lr), torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(data), (batch_size,), generator=g)
    losses = []
    for step in range(steps):
        if fresh:
            optimizer = opt_cls(model.parameters(), lr=lr)
        if step and not same_rows:
            rows = torch.randint(0, len(data), (batch_size,), generator=g)
        losses.append(s06.train_step(model, optimizer, data[rows]))
    return losses


def loop_fresh_optimizer(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    return _loop(model, data, steps, batch_size, lr, seed, fresh=True)


def loop_same_rows(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    return _loop(model, data, steps, batch_size, lr, seed, same_rows=True)


def loop_ignores_lr(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    return _loop(model, data, steps, batch_size, 1e-3, seed)


def loop_sgd(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    return _loop(model, data, steps, batch_size, lr, seed, opt_cls=torch.optim.SGD)


def loop_contiguous_batches(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    n = len(data) // batch_size
    return [s06.train_step(model, optimizer, data[(i % n) * batch_size:][:batch_size])
            for i in range(steps)]


def loop_tensor_losses(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    return [torch.tensor(x) for x in s06.train_loop(model, data, steps, batch_size, lr, seed)]


def loop_trains_a_copy(model, data, steps=300, batch_size=32, lr=3e-3, seed=0):
    return s06.train_loop(copy.deepcopy(model), data, steps, batch_size, lr, seed)


# -- lesson 7: count_params


def _ignoring(field, value):
    def count(cfg):
        try:
            return s07.count_params(_with_cfg(cfg, **{field: value(cfg)}))
        except ValueError:
            return s07.count_params(cfg) + 1
    count.__name__ = f"params_ignores_{field}"
    return count


def params_rms_with_bias(cfg):
    if cfg.normalization != "rms":
        return s07.count_params(cfg)
    return s07.count_params(_with_cfg(cfg, normalization="layer"))


def params_tied_counted_twice(cfg):
    return s07.count_params(cfg) + (cfg.d_model * cfg.d_vocab if cfg.tie_embeddings else 0)


def params_no_attn_biases(cfg):
    return s07.count_params(cfg) - (cfg.n_layers * (3 * cfg.n_heads * cfg.d_head + cfg.d_model)
                                    if cfg.attn_bias else 0)


def params_float(cfg):
    return float(s07.count_params(cfg))




# -- lesson 6: sample_next and bpe_merge


def sample_top_p_first(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0 or not (top_k and top_p):
        return s06.sample_next(logits, temperature, top_k, top_p, generator)
    logits = logits.float() / temperature
    sl, order = logits.sort(dim=-1, descending=True)
    probs = sl.softmax(-1)
    drop_sorted = probs.cumsum(-1) - probs >= top_p
    logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    kth = logits.topk(top_k, dim=-1).values[..., -1:]
    logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def bpe_by_string(ids, pair, new_id):
    """Merging in the decimal text of the ids: fine for one-digit ids only."""
    text = " ".join(map(str, ids)).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(t) for t in text.split()]


def bpe_digits_joined(ids, pair, new_id):
    text = ",".join(map(str, ids)) + ","
    text = text.replace(f"{pair[0]},{pair[1]},", f"{new_id},")
    return [int(t) for t in text.split(",") if t]


MUTANTS = {
    "sample_next": [(sample_top_p_first, "top-p was applied before top-k")],
    "bpe_merge": [(bpe_by_string, "ids with more than one digit"),
                  (bpe_digits_joined, "ids with more than one digit")],
    "gpt_forward": [(gpt_ignores_eps, "use cfg.eps"), (gpt_scale_from_d_model, "sqrt(cfg.d_head)"),
                    (gpt_always_mlp, "cfg.attn_only is True"),
                    (gpt_never_tied, "cfg.tie_embeddings is True"),
                    (gpt_two_blocks_always, "range(cfg.n_layers)")],
    "train_loop": [(loop_fresh_optimizer, "a new optimizer every step"),
                   (loop_same_rows, "the same rows every step"),
                   (loop_ignores_lr, "lr argument is ignored"), (loop_sgd, "not AdamW"),
                   (loop_contiguous_batches, "the first batch differs"),
                   (loop_tensor_losses, "the losses are tensors"),
                   (loop_trains_a_copy, "did not change")],
    "count_params": [
        (_ignoring("d_head", lambda c: max(1, c.d_model // c.n_heads)), "cfg.d_head"),
        (_ignoring("d_mlp", lambda c: 4 * c.d_model), "cfg.d_mlp"),
        (_ignoring("attn_only", lambda c: False), "cfg.attn_only"),
        (_ignoring("positional", lambda c: "learned"), "cfg.positional"),
        (_ignoring("attn_bias", lambda c: True), "cfg.attn_bias"),
        (_ignoring("mlp_bias", lambda c: True), "cfg.mlp_bias"),
        (_ignoring("unembed_bias", lambda c: False), "cfg.unembed_bias"),
        (_ignoring("embed_norm", lambda c: False), "cfg.embed_norm"),
        (_ignoring("final_norm", lambda c: True), "cfg.final_norm"),
        (_ignoring("mlm_head", lambda c: False), "cfg.mlm_head"),
        (_ignoring("n_token_types", lambda c: 0), "cfg.n_token_types"),
        (_ignoring("norm_position", lambda c: "pre"), "cfg.norm_position"),
        (params_rms_with_bias, "cfg.normalization"),
        (params_tied_counted_twice, "cfg.tie_embeddings"),
        (params_no_attn_biases, "you missed the attention biases"),
        (params_float, "return an int")],
}
