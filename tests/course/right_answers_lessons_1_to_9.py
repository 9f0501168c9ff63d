"""Right answers to lessons 1, 6, 8 and 9's first exercises, each written another way than
the reference (no training, another optimiser, another sampler, another loop, a library
call); right_answers.py
merges them into RIGHT."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# -- lesson 1


def classifier_nearest_neighbour(x_train, y_train, n_classes, seed=0):
    """No training at all: the label of the closest training image."""
    def predict(x):
        return y_train[torch.cdist(x, x_train).argmin(-1)]
    return predict


def classifier_sgd_momentum(x_train, y_train, n_classes, seed=0):
    """Another optimiser, another width, minibatches."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], 128), torch.nn.Tanh(),
                                torch.nn.Linear(128, n_classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(600):
        rows = torch.randint(0, len(x_train), (128,), generator=g)
        loss = F.cross_entropy(model(x_train[rows]), y_train[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()

    def predict(x):
        with torch.no_grad():
            return model(x).argmax(-1)
    return predict


# -- lesson 6


def sample_gumbel_max(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T)."""
    if temperature == 0:
        return logits.argmax(-1)
    scaled = logits.double() / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        scaled = scaled.masked_fill(scaled < scaled.topk(top_k, -1).values[..., -1:], -torch.inf)
    if top_p is not None and top_p < 1.0:
        probs = scaled.softmax(-1)
        sorted_p, order = probs.sort(-1, descending=True)
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        scaled = scaled.masked_fill(drop.scatter(-1, order, drop), -torch.inf)
    u = torch.rand(scaled.shape, generator=generator, dtype=torch.float64)
    return (scaled - torch.log(-torch.log(u))).argmax(-1)


def bpe_merge_by_slices(ids, pair, new_id):
    out, rest = [], list(ids)
    while rest:
        if len(rest) > 1 and (rest[0], rest[1]) == tuple(pair):
            out.append(new_id)
            rest = rest[2:]
        else:
            out.append(rest[0])
            rest = rest[1:]
    return out


def train_step_model_loss(model, optimizer, tokens):
    """The model's own next-token loss (return_type="loss" shifts the targets itself)."""
    optimizer.zero_grad(set_to_none=True)
    loss = model(tokens, return_type="loss")
    loss.backward()
    optimizer.step()
    return loss.item()


# -- lessons 8 and 9


def logit_lens_by_hand(model, tokens):
    """LayerNorm written out with F.layer_norm and ln_final's own parameters."""
    n, ln = model.cfg.n_layers, model.ln_final
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        streams = [cache[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
        streams.append(cache[f"blocks.{n - 1}.hook_resid_post"])
        return torch.stack([F.layer_norm(r, (model.cfg.d_model,), ln.w, ln.b, ln.eps)
                            @ model.W_U for r in streams])


def induction_score_loops(pattern, seq_len):
    per_query = [pattern[:, :, q, q - seq_len + 1] for q in range(seq_len, 2 * seq_len)]
    return torch.stack(per_query, -1).mean(dim=(0, 2))


def activation_patching_library(model, clean, corrupted, metric):
    from gptscope.interp import activation_patching

    return activation_patching(model, clean, corrupted, metric, kind="resid_pre")


RIGHT_ANSWERS = {
    "train_classifier": [classifier_nearest_neighbour, classifier_sgd_momentum],
    "sample_next": [sample_gumbel_max],
    "bpe_merge": [bpe_merge_by_slices],
    "train_step": [train_step_model_loss],
    "logit_lens": [logit_lens_by_hand],
    "induction_score": [induction_score_loops],
    "activation_patching": [activation_patching_library],
}
