"""Wrong and right answers to lesson 5b's exercises (cross-attention, a decoder block with
cross-attention, greedy decoding with an EncoderDecoder).

MUTANTS[exercise]: (wrong function, phrase its check must say); RIGHT_ANSWERS[exercise]:
right functions written differently from the reference. mutants.py and right_answers.py
merge both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gptscope.config import ModelConfig
from gptscope.course.checks import encoder_decoder as ce
from gptscope.model.layers import Block, cross_inputs

# -- cross_attention: one function with switches, each mutant flips one ------------------------


def _cross(x, mem, W_Q, W_K, W_V, W_O, src_mask=None, *, q_src="dec", kv_src=("enc", "enc"),
           causal=False, masking="ninf", scale="d_head", dim=-1, w_o=True):
    pick = {"dec": x, "enc": mem}
    q = torch.einsum("bqm,hmd->bhqd", pick[q_src], W_Q)
    k = torch.einsum("bkm,hmd->bhkd", pick[kv_src[0]], W_K)
    v = torch.einsum("bkm,hmd->bhkd", pick[kv_src[1]], W_V)
    d = {"d_head": W_Q.shape[-1], "d_model": x.shape[-1], "none": 1}[scale]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if causal:
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(),
                                    float("-inf"))
    if src_mask is not None:
        keep = src_mask.bool()[:, None, None, :]
        if masking == "ninf":
            scores = scores.masked_fill(~keep, float("-inf"))
        elif masking == "inverted":
            scores = scores.masked_fill(keep, float("-inf"))
        elif masking == "zero":
            scores = scores.masked_fill(~keep, 0.0)
    pattern = F.softmax(scores, dim=dim)
    if src_mask is not None and masking == "after":
        pattern = pattern * src_mask[:, None, None, :]
    z = pattern @ v
    if not w_o:
        return z.permute(0, 2, 1, 3).flatten(2)
    return torch.einsum("bhqd,hdm->bqm", z, W_O)


def cross_causal(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, causal=True)


def cross_keys_from_decoder(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, kv_src=("dec", "enc"))


def cross_values_from_decoder(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, kv_src=("enc", "dec"))


def cross_is_self_attention(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, kv_src=("dec", "dec"))


def cross_roles_swapped(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, q_src="enc", kv_src=("dec", "dec"))


def cross_mask_ignored(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, masking="none")


def cross_mask_inverted(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, masking="inverted")


def cross_mask_zero(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, masking="zero")


def cross_mask_after_softmax(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, masking="after")


def cross_scaled_by_d_model(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, scale="d_model")


def cross_unscaled(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, scale="none")


def cross_softmax_over_queries(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, dim=-2)


def cross_no_w_o(*a, src_mask=None):
    return _cross(*a, src_mask=src_mask, w_o=False)


# -- cross_attention: right answers written other ways -----------------------------------------


def cross_by_head_loop(x, mem, W_Q, W_K, W_V, W_O, src_mask=None):
    out = torch.zeros_like(x)
    for h in range(W_Q.shape[0]):
        q, k, v = x @ W_Q[h], mem @ W_K[h], mem @ W_V[h]
        scores = q @ k.transpose(1, 2) / W_Q.shape[-1] ** 0.5
        if src_mask is not None:
            scores = torch.where(src_mask.bool()[:, None, :], scores, -torch.inf)
        out = out + torch.softmax(scores, -1) @ v @ W_O[h]
    return out


def cross_by_sdpa(x, mem, W_Q, W_K, W_V, W_O, src_mask=None):
    q = torch.einsum("bqm,hmd->bhqd", x, W_Q)
    k = torch.einsum("bkm,hmd->bhkd", mem, W_K)
    v = torch.einsum("bkm,hmd->bhkd", mem, W_V)
    mask = None if src_mask is None else src_mask.bool()[:, None, None, :]
    z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return torch.einsum("bhqd,hdm->bqm", z, W_O)


def cross_in_float64(x, mem, W_Q, W_K, W_V, W_O, src_mask=None):
    args = [t.double() for t in (x, mem, W_Q, W_K, W_V, W_O)]
    return cross_by_head_loop(*args, src_mask=src_mask).to(x.dtype)


# -- decoder_block_with_cross: switches on a written-out block ---------------------------------


def _block(x, mem, p, src_mask=None, eps=1e-5, *, self_causal=True, cross_causal=False,
           cross_first=False, cross_norm="ln_cross", post=False, adds=True, mlp_reads="cross",
           mask=True, kv="enc", act=F.relu):
    def ln(h, name):
        return F.layer_norm(h, h.shape[-1:], p[name + ".w"], p[name + ".b"], eps)

    def attend(h, kv_in, name, keep):
        q = torch.einsum("bqm,hmd->bhqd", h, p[name + ".W_Q"])
        k = torch.einsum("bkm,hmd->bhkd", kv_in, p[name + ".W_K"])
        v = torch.einsum("bkm,hmd->bhkd", kv_in, p[name + ".W_V"])
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return torch.einsum("bhqd,hdm->bqm", z, p[name + ".W_O"])

    n_q, n_k = x.shape[1], mem.shape[1]
    tril = torch.ones(n_q, n_q, dtype=torch.bool).tril()
    src = src_mask.bool()[:, None, None, :] if (src_mask is not None and mask) else None
    if cross_causal:
        low = torch.ones(n_q, n_k, dtype=torch.bool).tril()
        src = low if src is None else src & low

    def self_part(h):
        a = h if post else ln(h, "ln1")
        h = h + attend(a, a, "attn", tril if self_causal else None)
        return ln(h, "ln1") if post else h

    def cross_part(h):
        a = h if (post or cross_norm is None) else ln(h, cross_norm)
        out = attend(a, mem if kv == "enc" else a, "cross_attn", src)
        h = h + out if adds else out
        return ln(h, "ln_cross") if post else h

    parts = (cross_part, self_part) if cross_first else (self_part, cross_part)
    mid = parts[0](x)
    mid_cross = parts[1](mid)
    h = mid_cross if mlp_reads == "cross" else mid
    h = h if post else ln(h, "ln2")
    out = mid_cross + act(h @ p["mlp.W_in"] + p["mlp.b_in"]) @ p["mlp.W_out"] + p["mlp.b_out"]
    return ln(out, "ln2") if post else out


def block_self_not_causal(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, self_causal=False)


def block_cross_causal(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, cross_causal=True)


def block_cross_first(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, cross_first=True)


def block_no_ln_cross(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, cross_norm=None)


def block_ln1_for_cross(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, cross_norm="ln1")


def block_post_ln(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, post=True)


def block_cross_replaces(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, adds=False)


def block_mlp_skips_cross(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, mlp_reads="mid")


def block_mask_ignored(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, mask=False)


def block_cross_reads_decoder(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, kv="dec")


def block_gelu(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps, act=F.gelu)


# -- decoder_block_with_cross: right answers ---------------------------------------------------


def block_written_out(x, mem, p, src_mask=None, eps=1e-5):
    return _block(x, mem, p, src_mask, eps)


def block_by_gptscope(x, mem, p, src_mask=None, eps=1e-5):
    """gptscope's own Block, built with cross_attention=True and given the weights."""
    H, d, dh = p["attn.W_Q"].shape
    cfg = ModelConfig(n_layers=1, d_model=d, n_heads=H, d_head=dh, d_mlp=p["mlp.W_in"].shape[1],
                      act_fn="relu", attn_bias=False, cross_attention=True, eps=eps)
    block = Block(cfg, dtype=x.dtype)
    block.load_state_dict(p)
    cross = cross_inputs(cfg, mem, None if src_mask is None else src_mask.long(), x.shape[0],
                         x.device, x.dtype)
    with torch.no_grad():
        return block(x, None, cross=cross)


# -- greedy_translate: a learner's loop with switches ------------------------------------------


def _greedy(model, src, src_mask, bos, eos, n, *, keep_bos=True, stop="all", fill="eos",
            pos=-1, enc_mask=True, ctx_mask=True, final=True, steps=0):
    with torch.no_grad():
        if final:
            memory = model.encode(src, src_mask if enc_mask else None)
        else:
            memory = model.encoder(src, attention_mask=src_mask,
                                   stop_at_layer=model.encoder.cfg.n_layers)
        out = [[bos] for _ in range(len(src))]
        finished = [False] * len(src)
        for _ in range(n + steps):
            tgt = torch.tensor(out)
            logits = model.decoder(tgt, context=memory,
                                   context_mask=src_mask if ctx_mask else None)
            best = logits[:, pos].argmax(-1).tolist()
            for i, token in enumerate(best):
                if finished[i] and stop != "ignore":
                    token = eos if fill == "eos" else 0
                out[i].append(token)
                finished[i] = finished[i] or token == eos
            if (stop == "all" and all(finished)) or (stop == "first" and finished[0]):
                break
        result = torch.tensor(out)
    return result if keep_bos else result[:, 1:]


def greedy_no_bos(*a):
    return _greedy(*a, keep_bos=False)


def greedy_ignores_eos(*a):
    return _greedy(*a, stop="ignore")


def greedy_no_early_stop(*a):
    return _greedy(*a, stop="never")


def greedy_stops_at_first_row(*a):
    return _greedy(*a, stop="first")


def greedy_pads_with_zero(*a):
    return _greedy(*a, fill="pad")


def greedy_first_position(*a):
    return _greedy(*a, pos=0)


def greedy_encoder_unmasked(*a):
    return _greedy(*a, enc_mask=False)


def greedy_context_unmasked(*a):
    return _greedy(*a, ctx_mask=False)


def greedy_no_final_norm(*a):
    return _greedy(*a, final=False)


def greedy_one_step_more(*a):
    return _greedy(*a, steps=1, stop="never")


def greedy_one_step_less(*a):
    return _greedy(*a, steps=-1, stop="never")


# -- greedy_translate: right answers -----------------------------------------------------------


def greedy_by_generate(model, src, src_mask, bos, eos, n):
    return model.generate(src, n, bos=bos, eos=eos, src_mask=src_mask)


def greedy_teacher_forced_each_step(model, src, src_mask, bos, eos, n):
    seq = torch.full((len(src), 1), bos)
    done = torch.zeros(len(src), dtype=torch.bool)
    with torch.no_grad():
        for _ in range(n):
            nxt = model(src, seq, src_mask=src_mask)[:, -1].argmax(-1)
            nxt[done] = eos
            seq = torch.cat([seq, nxt[:, None]], 1)
            done |= nxt == eos
            if bool(done.all()):
                break
    return seq


def greedy_by_list_loop(*a):
    return _greedy(*a)


MUTANTS = {
    "cross_attention": [
        (cross_causal, ce.CROSS_CAUSAL), (cross_keys_from_decoder, ce.KEYS_FROM_DECODER),
        (cross_values_from_decoder, ce.VALUES_FROM_DECODER),
        (cross_is_self_attention, ce.SELF_ATTENTION), (cross_roles_swapped, ce.ROLES_SWAPPED),
        (cross_mask_ignored, ce.MASK_IGNORED), (cross_mask_inverted, ce.MASK_INVERTED),
        (cross_mask_zero, ce.MASK_ZERO), (cross_mask_after_softmax, ce.MASK_AFTER),
        (cross_scaled_by_d_model, ce.SCALE_D_MODEL), (cross_unscaled, ce.NO_SCALE),
        (cross_softmax_over_queries, ce.SOFTMAX_QUERIES), (cross_no_w_o, ce.NO_W_O),
    ],
    "decoder_block_with_cross": [
        (block_self_not_causal, ce.SELF_NOT_CAUSAL), (block_cross_causal, ce.BLOCK_CROSS_CAUSAL),
        (block_cross_first, ce.CROSS_FIRST), (block_no_ln_cross, ce.NO_LN_CROSS),
        (block_ln1_for_cross, ce.LN1_FOR_CROSS), (block_post_ln, ce.POST_LN),
        (block_cross_replaces, ce.CROSS_REPLACES), (block_mlp_skips_cross, ce.MLP_SKIPS_CROSS),
        (block_mask_ignored, ce.BLOCK_MASK_IGNORED),
        (block_cross_reads_decoder, ce.CROSS_READS_DECODER), (block_gelu, ce.GELU),
    ],
    "greedy_translate": [
        (greedy_no_bos, ce.NO_BOS), (greedy_ignores_eos, ce.IGNORES_EOS),
        (greedy_no_early_stop, ce.NO_EARLY_STOP), (greedy_stops_at_first_row, ce.STOPS_AT_FIRST),
        (greedy_pads_with_zero, ce.PADS_NOT_EOS), (greedy_first_position, ce.FIRST_POSITION),
        (greedy_encoder_unmasked, ce.ENCODER_UNMASKED),
        (greedy_context_unmasked, ce.CONTEXT_UNMASKED),
        (greedy_no_final_norm, ce.NO_FINAL_NORM), (greedy_one_step_more, ce.STEPS_OFF),
        (greedy_one_step_less, ce.STEPS_OFF),
    ],
}

RIGHT_ANSWERS = {
    "cross_attention": [cross_by_head_loop, cross_by_sdpa, cross_in_float64],
    "decoder_block_with_cross": [block_written_out, block_by_gptscope],
    "greedy_translate": [greedy_by_generate, greedy_teacher_forced_each_step,
                         greedy_by_list_loop],
}
