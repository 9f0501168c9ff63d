"""Lesson 13b's known wrong answers (each with the phrase its check must say) and right
answers written differently from the reference (each must pass).

MUTANTS[exercise] and RIGHT_ANSWERS[exercise] are lists; ``mutants.py`` merges MUTANTS
into the course-wide table. Every message the lesson's checks can print has a mutant here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptscope.align import losses as lib
from gptscope.course.solutions import lesson13b_assistant as s


def _logp(logits, targets, dim=-1):
    return logits.log_softmax(dim).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _mean_where(values, mask):
    w = mask.to(values.dtype)
    return (values * w).sum() / w.sum().clamp(min=1)


# -- masked_sft_loss


def sft_all_positions(logits, targets, mask):
    return -_logp(logits, targets).mean()


def sft_masked_then_mean(logits, targets, mask):
    return -(_logp(logits, targets) * mask).mean()


def sft_sum(logits, targets, mask):
    return -(_logp(logits, targets) * mask).sum()


def sft_row_means(logits, targets, mask):
    w = mask.float()
    return (-(_logp(logits, targets) * w).sum(-1) / w.sum(-1)).mean()


def sft_mask_inverted(logits, targets, mask):
    return _mean_where(-_logp(logits, targets), ~mask)


def sft_shift_again(logits, targets, mask):
    return _mean_where(-_logp(logits[:, :-1], targets[:, 1:]), mask[:, 1:])


def sft_probs(logits, targets, mask):
    return _mean_where(-_logp(logits, targets).exp(), mask)


def sft_sign(logits, targets, mask):
    return _mean_where(_logp(logits, targets), mask)


def sft_raw_logit(logits, targets, mask):
    return _mean_where(-logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1), mask)


def sft_wrong_axis(logits, targets, mask):
    return _mean_where(-_logp(logits, targets, dim=1), mask)


def sft_nan_when_empty(logits, targets, mask):
    return -(_logp(logits, targets) * mask).sum() / mask.sum()


def sft_log_of_softmax(logits, targets, mask):
    picked = torch.log(F.softmax(logits, -1)).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -picked[mask].sum() / mask.sum().clamp(min=1)


def sft_per_token(logits, targets, mask):
    return -_logp(logits, targets) * mask


def sft_item(logits, targets, mask):
    return s.masked_sft_loss(logits, targets, mask).item()


def sft_no_grad(logits, targets, mask):
    return torch.tensor(s.masked_sft_loss(logits, targets, mask).item())


def sft_unknown(logits, targets, mask):
    return 1.5 * s.masked_sft_loss(logits, targets, mask)


def sft_right_cross_entropy(logits, targets, mask):
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (per_token * mask).sum() / max(int(mask.sum()), 1)


def sft_right_indexing64(logits, targets, mask):
    if not mask.any():
        return logits.sum() * 0.0
    return -_logp(logits.double(), targets)[mask].mean()


def sft_right_logsumexp(logits, targets, mask):
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nll = torch.logsumexp(logits, -1) - picked
    return torch.where(mask, nll, torch.zeros_like(nll)).sum() / mask.sum().clamp(min=1)


# -- bradley_terry_loss


def bt_sigmoid(chosen, rejected):
    return -torch.sigmoid(chosen - rejected).mean()


def bt_one_minus_sigmoid(chosen, rejected):
    return (1 - torch.sigmoid(chosen - rejected)).mean()


def bt_swapped(chosen, rejected):
    return -F.logsigmoid(rejected - chosen).mean()


def bt_sum(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).sum()


def bt_sign(chosen, rejected):
    return F.logsigmoid(chosen - rejected).mean()


def bt_separate(chosen, rejected):
    return -(F.logsigmoid(chosen) + F.logsigmoid(-rejected)).mean()


def bt_hinge(chosen, rejected):
    return torch.relu(1 - (chosen - rejected)).mean()


def bt_per_pair(chosen, rejected):
    return -F.logsigmoid(chosen - rejected)


def bt_no_return(chosen, rejected):
    -F.logsigmoid(chosen - rejected).mean()


def bt_no_grad(chosen, rejected):
    return s.bradley_terry_loss(chosen.detach(), rejected.detach())


def bt_unknown(chosen, rejected):
    return -F.logsigmoid(2 * (chosen - rejected)).mean()


def bt_right_softplus(chosen, rejected):
    return F.softplus(rejected - chosen).mean()


def bt_right_log_of_sigmoid(chosen, rejected):
    return -torch.log(torch.sigmoid(chosen - rejected)).mean()


def bt_right_bce(chosen, rejected):
    margin = chosen - rejected
    return F.binary_cross_entropy_with_logits(margin, torch.ones_like(margin))


def bt_right_log1p64(chosen, rejected):
    return torch.log1p(torch.exp(-(chosen.double() - rejected.double()))).mean()


# -- normalize_rewards


def norm_unbiased(rewards, mean=None, std=None, eps=1e-8):
    mean = rewards.mean() if mean is None else mean
    std = rewards.std() if std is None else std
    return (rewards - mean) / (std + eps)


def norm_eps_sqrt(rewards, mean=None, std=None, eps=1e-8):
    mean = rewards.mean() if mean is None else mean
    var = rewards.var(correction=0) if std is None else torch.as_tensor(std) ** 2
    return (rewards - mean) / (var + eps).sqrt()


def norm_eps_ignored(rewards, mean=None, std=None, eps=1e-8):
    mean = rewards.mean() if mean is None else mean
    std = rewards.std(correction=0) if std is None else std
    return (rewards - mean) / std


def norm_mean_ignored(rewards, mean=None, std=None, eps=1e-8):
    return s.normalize_rewards(rewards, None, std, eps)


def norm_std_ignored(rewards, mean=None, std=None, eps=1e-8):
    return s.normalize_rewards(rewards, mean, None, eps)


def norm_both_ignored(rewards, mean=None, std=None, eps=1e-8):
    return s.normalize_rewards(rewards, None, None, eps)


def norm_zero_mean_as_none(rewards, mean=None, std=None, eps=1e-8):
    mean = mean if mean else rewards.mean()
    return s.normalize_rewards(rewards, mean, std, eps)


def norm_center_only(rewards, mean=None, std=None, eps=1e-8):
    return rewards - (rewards.mean() if mean is None else mean)


def norm_not_centered(rewards, mean=None, std=None, eps=1e-8):
    return rewards / ((rewards.std(correction=0) if std is None else std) + eps)


def norm_variance(rewards, mean=None, std=None, eps=1e-8):
    mean = rewards.mean() if mean is None else mean
    var = rewards.var(correction=0) if std is None else torch.as_tensor(std) ** 2
    return (rewards - mean) / (var + eps)


def norm_in_place(rewards, mean=None, std=None, eps=1e-8):
    spread = rewards.std(correction=0) if std is None else std
    rewards -= rewards.mean() if mean is None else mean
    return rewards / (spread + eps)


def norm_list(rewards, mean=None, std=None, eps=1e-8):
    return s.normalize_rewards(rewards, mean, std, eps).tolist()


def norm_extra_dim(rewards, mean=None, std=None, eps=1e-8):
    return s.normalize_rewards(rewards, mean, std, eps)[None, :]


def norm_unknown(rewards, mean=None, std=None, eps=1e-8):
    return s.normalize_rewards(rewards, mean, std, eps) * 0.9 + 0.01


def norm_right_manual64(rewards, mean=None, std=None, eps=1e-8):
    r = rewards.double()
    m = r.mean() if mean is None else torch.as_tensor(mean, dtype=torch.float64)
    sd = ((r - r.mean()) ** 2).mean().sqrt() if std is None else torch.as_tensor(
        std, dtype=torch.float64)
    return (r - m) / (sd + eps)


def norm_right_var_sqrt(rewards, mean=None, std=None, eps=1e-8):
    if std is None:
        std = rewards.var(unbiased=False).sqrt()
    if mean is None:
        mean = rewards.mean()
    return (rewards - mean) * (1.0 / (std + eps))


def norm_right_std_mean(rewards, mean=None, std=None, eps=1e-8):
    batch_std, batch_mean = torch.std_mean(rewards, correction=0)
    mean = batch_mean if mean is None else mean
    std = batch_std if std is None else std
    return torch.sub(rewards, mean).div(std + eps)


# -- kl_estimators


def _kl(logprobs, ref_logprobs, k1=None, k3=None):
    out = s.kl_estimators(logprobs, ref_logprobs)
    lr = ref_logprobs - logprobs
    if k1 is not None:
        out["k1"] = k1(lr)
    if k3 is not None:
        out["k3"] = k3(lr)
    return out


def kl_k1_sign(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k1=lambda lr: lr)


def kl_k1_abs(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k1=lambda lr: lr.abs())


def kl_k3_no_minus1(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k3=lambda lr: lr.exp() - lr)


def kl_k3_plus(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k3=lambda lr: lr.exp() - 1 + lr)


def kl_k3_no_log(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k3=lambda lr: lr.exp() - 1)


def kl_k3_inverted(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k3=lambda lr: (-lr).exp() - 1 + lr)


def kl_direction(logprobs, ref_logprobs):
    lr = logprobs - ref_logprobs  # the reverse of the contract's log-ratio
    return {"k1": -lr, "k3": lr.exp() - 1 - lr}


def kl_k2_no_half(logprobs, ref_logprobs):
    out = s.kl_estimators(logprobs, ref_logprobs)
    out["k2"] = (ref_logprobs - logprobs) ** 2
    return out


def kl_reduced(logprobs, ref_logprobs):
    return {k: v.mean() for k, v in s.kl_estimators(logprobs, ref_logprobs).items()}


def kl_tuple(logprobs, ref_logprobs):
    out = s.kl_estimators(logprobs, ref_logprobs)
    return out["k1"], out["k3"]


def kl_missing_k3(logprobs, ref_logprobs):
    return {"k1": logprobs - ref_logprobs, "k2": (ref_logprobs - logprobs) ** 2 / 2}


def kl_unknown(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k3=lambda lr: 2 * (lr.exp() - 1 - lr))


def kl_k3_plus_cube(logprobs, ref_logprobs):
    return _kl(logprobs, ref_logprobs, k3=lambda lr: lr.exp() - 1 - lr + lr ** 3)


def kl_right_exp(logprobs, ref_logprobs):
    lr = ref_logprobs - logprobs
    return {"k1": -lr, "k3": lr.exp() - 1 - lr}


def kl_right_ratio64(logprobs, ref_logprobs):
    ratio = (ref_logprobs.double() - logprobs.double()).exp()
    return {"k1": -ratio.log(), "k3": (ratio - 1) - ratio.log()}


# -- ppo_clip_loss


def _ppo(logprobs, old_logprobs, advantages, mask, clip=0.2, ratio=None, combine=None,
         mean=None, fraction=None):
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    r = (logprobs - old_logprobs.detach()).exp() if ratio is None else ratio
    clipped = r.clamp(1 - clip, 1 + clip)
    terms = (combine or (lambda a, b: -torch.minimum(a, b)))(r * advantages,
                                                            clipped * advantages)
    loss = (mean or _mean_where)(terms, mask)
    outside = ((r - 1).abs() > clip).float()
    return loss, (fraction(r, advantages, mask, clip) if fraction else _mean_where(outside,
                                                                                   mask))


def ppo_no_clip(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip, combine=lambda a, b: -a)


def ppo_max(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip,
                combine=lambda a, b: -torch.maximum(a, b))


def ppo_only_clipped(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip, combine=lambda a, b: -b)


def ppo_ratio_inverted(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip,
                ratio=(old_logprobs - logprobs).exp())


def ppo_clip_ignored(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return s.ppo_clip_loss(logprobs, old_logprobs, advantages, mask, 0.2)


def ppo_all_positions(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip, mean=lambda v, m: v.mean())


def ppo_row_means(logprobs, old_logprobs, advantages, mask, clip=0.2):
    def rows(values, m):
        w = m.to(values.dtype)
        return ((values * w).sum(-1) / w.sum(-1)).mean()
    return _ppo(logprobs, old_logprobs, advantages, mask, clip, mean=rows)


def ppo_sum(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip,
                mean=lambda v, m: (v * m).sum())


def ppo_sign(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip,
                combine=lambda a, b: torch.minimum(a, b))


def ppo_log_clip(logprobs, old_logprobs, advantages, mask, clip=0.2):
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    log_ratio = logprobs - old_logprobs.detach()
    clipped = log_ratio.clamp(-clip, clip).exp()
    loss = _mean_where(-torch.minimum(log_ratio.exp() * advantages, clipped * advantages), mask)
    return loss, _mean_where(((log_ratio.exp() - 1).abs() > clip).float(), mask)


def ppo_broadcast_pos(logprobs, old_logprobs, advantages, mask, clip=0.2):
    if advantages.dim() == 1:
        advantages = advantages[None, :].expand_as(logprobs)
    return s.ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip)


def ppo_per_token(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip, mean=lambda v, m: v * m)


def ppo_old_not_detached(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return _ppo(logprobs, old_logprobs, advantages, mask, clip,
                ratio=(logprobs - old_logprobs).exp())


def ppo_detached_clip(logprobs, old_logprobs, advantages, mask, clip=0.2):
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    ratio = (logprobs - old_logprobs.detach()).exp()
    clipped = ratio.detach().clamp(1 - clip, 1 + clip)
    loss = _mean_where(-torch.minimum(ratio * advantages, clipped * advantages), mask)
    return loss, _mean_where(((ratio - 1).abs() > clip).float(), mask)


def ppo_no_grad(logprobs, old_logprobs, advantages, mask, clip=0.2):
    loss, fraction = s.ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip)
    return torch.tensor(loss.item()), fraction


def _fraction_mutant(rule):
    def mutant(logprobs, old_logprobs, advantages, mask, clip=0.2):
        return _ppo(logprobs, old_logprobs, advantages, mask, clip, fraction=rule)
    return mutant


ppo_cf_log_ratio = _fraction_mutant(
    lambda r, a, m, c: _mean_where((r.log().abs() > c).float(), m))
ppo_cf_active_only = _fraction_mutant(lambda r, a, m, c: _mean_where(
    (((r > 1 + c) & (a > 0)) | ((r < 1 - c) & (a < 0))).float(), m))
ppo_cf_all_positions = _fraction_mutant(lambda r, a, m, c: ((r - 1).abs() > c).float().mean())
ppo_cf_one_side = _fraction_mutant(lambda r, a, m, c: _mean_where((r > 1 + c).float(), m))
ppo_cf_count = _fraction_mutant(lambda r, a, m, c: (((r - 1).abs() > c) & m).sum())
ppo_cf_inside = _fraction_mutant(lambda r, a, m, c: _mean_where(((r - 1).abs() <= c).float(),
                                                                m))
ppo_cf_clip_ignored = _fraction_mutant(
    lambda r, a, m, c: _mean_where(((r - 1).abs() > 0.2).float(), m))
ppo_cf_rows = _fraction_mutant(lambda r, a, m, c: (
    (((r - 1).abs() > c) & m).sum(-1) / m.sum(-1).clamp(min=1)).mean())
for _name in ("log_ratio", "active_only", "all_positions", "one_side", "count", "inside",
              "clip_ignored", "rows"):
    globals()[f"ppo_cf_{_name}"].__name__ = f"ppo_cf_{_name}"


def ppo_loss_only(logprobs, old_logprobs, advantages, mask, clip=0.2):
    return s.ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip)[0]


def ppo_three_values(logprobs, old_logprobs, advantages, mask, clip=0.2):
    loss, fraction = s.ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip)
    return loss, fraction, (logprobs - old_logprobs).exp()


def ppo_fraction_float(logprobs, old_logprobs, advantages, mask, clip=0.2):
    loss, fraction = s.ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip)
    return loss, fraction.item()


def ppo_unknown(logprobs, old_logprobs, advantages, mask, clip=0.2):
    loss, fraction = s.ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip)
    return loss * 1.3, fraction


def ppo_right_where(logprobs, old_logprobs, advantages, mask, clip=0.2):
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    ratio = torch.exp(logprobs - old_logprobs.detach())
    plain, clipped = ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    per_token = -torch.where(plain <= clipped, plain, clipped)
    n = mask.sum().clamp(min=1)
    outside = (ratio > 1 + clip) | (ratio < 1 - clip)
    return per_token.masked_fill(~mask, 0).sum() / n, (outside & mask).sum() / n


def ppo_right_max_of_negatives64(logprobs, old_logprobs, advantages, mask, clip=0.2):
    lp, old = logprobs.double(), old_logprobs.detach().double()
    adv = advantages.double()
    adv = adv[:, None] if adv.dim() == 1 else adv
    ratio = (lp - old).exp()
    per_token = torch.maximum(-ratio * adv, -ratio.clamp(1 - clip, 1 + clip) * adv)
    outside = ((ratio - 1).abs() > clip).double()
    return _mean_where(per_token, mask), _mean_where(outside, mask)


# -- dpo_loss


def _dpo(c, r, rc, rr, beta=0.1, kind="sigmoid", margin=None, loss=None, rewards=None):
    chosen, rejected = c - rc.detach(), r - rr.detach()
    h = chosen - rejected if margin is None else margin
    if loss is not None:
        value = loss(h, beta)
    elif kind == "ipo":
        value = (h - 1 / (2 * beta)).square().mean()
    else:
        value = -F.logsigmoid(beta * h).mean()
    if rewards is not None:
        return value, *rewards(chosen, rejected)
    return value, (beta * chosen).detach(), (beta * rejected).detach()


def dpo_negative_margin(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return _dpo(c, r, rc, rr, beta, kind, margin=(r - rr.detach()) - (c - rc.detach()))


def dpo_inputs_swapped(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return s.dpo_loss(r, c, rr, rc, beta, kind)


def dpo_ref_swapped(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return _dpo(c, r, rc, rr, beta, kind, margin=(c - rr.detach()) - (r - rc.detach()))


def dpo_no_ref(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return _dpo(c, r, rc, rr, beta, kind, margin=c - r)


def dpo_sum(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    loss, chosen, rejected = s.dpo_loss(c, r, rc, rr, beta, kind)
    return loss * c.shape[0], chosen, rejected


def dpo_beta_ignored(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return s.dpo_loss(c, r, rc, rr, 0.1, kind)


def dpo_no_beta(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return s.dpo_loss(c, r, rc, rr, beta, kind) if kind == "ipo" else _dpo(
        c, r, rc, rr, beta, kind, loss=lambda h, b: -F.logsigmoid(h).mean())


def dpo_sigmoid_not_log(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return _dpo(c, r, rc, rr, beta, kind, loss=lambda h, b: -torch.sigmoid(b * h).mean())


def dpo_kind_ignored(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return s.dpo_loss(c, r, rc, rr, beta, "sigmoid")


def dpo_ipo_one_over_beta(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return s.dpo_loss(c, r, rc, rr, beta, kind) if kind != "ipo" else _dpo(
        c, r, rc, rr, beta, kind, loss=lambda h, b: (h - 1 / b).square().mean())


def dpo_ipo_scaled(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return s.dpo_loss(c, r, rc, rr, beta, kind) if kind != "ipo" else _dpo(
        c, r, rc, rr, beta, kind, loss=lambda h, b: (b * h - 0.5).square().mean())


def dpo_ref_not_detached(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    h = (c - rc) - (r - rr)
    loss = -F.logsigmoid(beta * h).mean() if kind != "ipo" else (
        h - 1 / (2 * beta)).square().mean()
    return loss, (beta * (c - rc)).detach(), (beta * (r - rr)).detach()


def _reward_mutant(rule):
    def mutant(c, r, rc, rr, beta=0.1, kind="sigmoid"):
        return _dpo(c, r, rc, rr, beta, kind, rewards=lambda ch, rj: rule(ch, rj, c, r, beta))
    return mutant


dpo_rewards_swapped = _reward_mutant(lambda ch, rj, c, r, b: ((b * rj).detach(),
                                                              (b * ch).detach()))
dpo_rewards_no_beta = _reward_mutant(lambda ch, rj, c, r, b: (ch.detach(), rj.detach()))
dpo_rewards_sign = _reward_mutant(lambda ch, rj, c, r, b: ((-b * ch).detach(),
                                                           (-b * rj).detach()))
dpo_rewards_no_ref = _reward_mutant(lambda ch, rj, c, r, b: ((b * c).detach(),
                                                             (b * r).detach()))
dpo_rewards_beta_ignored = _reward_mutant(lambda ch, rj, c, r, b: ((0.1 * ch).detach(),
                                                                   (0.1 * rj).detach()))
dpo_rewards_reduced = _reward_mutant(lambda ch, rj, c, r, b: ((b * ch).mean().detach(),
                                                              (b * rj).mean().detach()))
dpo_rewards_not_detached = _reward_mutant(lambda ch, rj, c, r, b: (b * ch, b * rj))
for _name in ("swapped", "no_beta", "sign", "no_ref", "beta_ignored", "reduced",
              "not_detached"):
    globals()[f"dpo_rewards_{_name}"].__name__ = f"dpo_rewards_{_name}"


def dpo_list(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return list(s.dpo_loss(c, r, rc, rr, beta, kind))


def dpo_two_values(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    return s.dpo_loss(c, r, rc, rr, beta, kind)[:2]


def dpo_no_grad(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    loss, chosen, rejected = s.dpo_loss(c, r, rc, rr, beta, kind)
    return loss.detach(), chosen, rejected


def dpo_probability_ratios(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    # exp() of a long response's log-prob underflows to 0 in float32: 0 / 0 = nan.
    h = torch.log(c.exp() / rc.detach().exp()) - torch.log(r.exp() / rr.detach().exp())
    return _dpo(c, r, rc, rr, beta, kind, margin=h)


def dpo_unknown(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    loss, chosen, rejected = s.dpo_loss(c, r, rc, rr, beta, kind)
    return loss + 0.05, chosen, rejected


def dpo_right_softplus(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    h = (c - r) - (rc - rr).detach()
    if kind == "ipo":
        loss = (h * h - h / beta + 1 / (4 * beta * beta)).mean()
    else:
        loss = F.softplus(-beta * h).mean()
    return loss, beta * (c - rc).detach(), beta * (r - rr).detach()


def dpo_right_log_sigmoid64(c, r, rc, rr, beta=0.1, kind="sigmoid"):
    chosen = c.double() - rc.detach().double()
    rejected = r.double() - rr.detach().double()
    h = chosen - rejected
    if kind == "ipo":
        loss = torch.mean((h - 0.5 / beta) ** 2)
    else:
        loss = -torch.log(torch.sigmoid(beta * h)).mean()
    return loss, (beta * chosen).detach(), (beta * rejected).detach()


MUTANTS: dict[str, list[tuple[object, str]]] = {
    "masked_sft_loss": [
        (sft_all_positions, "averaged over all positions"),
        (sft_masked_then_mean, "averaged over all positions"),
        (sft_sum, "summed the masked token losses"),
        (sft_row_means, "each row's mean, then the mean of the rows"),
        (sft_mask_inverted, "the mask is inverted"),
        (sft_shift_again, "shifted them once more"),
        (sft_probs, "you used probabilities"),
        (sft_sign, "the sign is flipped"),
        (sft_raw_logit, "raw logit of the target"),
        (sft_wrong_axis, "log_softmax over the wrong axis"),
        (sft_nan_when_empty, "must be 0, not nan"),
        (sft_log_of_softmax, "underflows to -inf on very confident rows"),
        (sft_per_token, "one loss per token"),
        (sft_item, "is a plain number (float), not a tensor"),
        (sft_no_grad, "carries no gradient"),
        (sft_unknown, "differs from the right answer"),
    ],
    "bradley_terry_loss": [
        (bt_sigmoid, "sigmoid(margin) itself"),
        (bt_one_minus_sigmoid, "sigmoid(margin) itself"),
        (bt_swapped, "chosen and rejected are swapped"),
        (bt_sum, "summed over the pairs"),
        (bt_sign, "the sign is flipped"),
        (bt_separate, "scored each reward on its own"),
        (bt_hinge, "hinge (margin ranking) loss"),
        (bt_per_pair, "one loss per pair"),
        (bt_no_return, "forget the `return`"),
        (bt_no_grad, "carries no gradient"),
        (bt_unknown, "differs from the right answer"),
    ],
    "normalize_rewards": [
        (norm_unbiased, "sample std (dividing by n - 1)"),
        (norm_eps_sqrt, "eps went inside the square root"),
        (norm_eps_ignored, "eps is missing"),
        (norm_mean_ignored, "the given mean was ignored"),
        (norm_std_ignored, "the given std was ignored"),
        (norm_both_ignored, "mean and std were both ignored"),
        (norm_zero_mean_as_none, "mean=0.0 was treated as missing"),
        (norm_center_only, "only subtracted the mean"),
        (norm_not_centered, "only divided by the std"),
        (norm_variance, "divided by the variance"),
        (norm_in_place, "changed the caller's rewards in place"),
        (norm_list, "is a list, not a tensor"),
        (norm_extra_dim, "has shape [1, 1], expected [1]"),
        (norm_unknown, "differs from the right answer"),
    ],
    "kl_estimators": [
        (kl_k1_sign, "k1 has the wrong sign"),
        (kl_k1_abs, "k1 is signed"),
        (kl_k3_no_minus1, "you dropped the -1"),
        (kl_k3_plus, "you added it"),
        (kl_k3_no_log, "k3 needs the -log_ratio term"),
        (kl_k3_inverted, "inverted ratio p/q"),
        (kl_direction, "estimates KL(reference || policy)"),
        (kl_k2_no_half, "you dropped the 1/2"),
        (kl_reduced, "you reduced the estimates"),
        (kl_tuple, "should return a dict"),
        (kl_missing_k3, "has no key 'k3'"),
        (kl_unknown, "the right answer times 2"),
        (kl_k3_plus_cube, "differs from the right answer"),
    ],
    "ppo_clip_loss": [
        (ppo_no_clip, "no clipping"),
        (ppo_max, "you took the max of the two terms"),
        (ppo_only_clipped, "used only the clipped term"),
        (ppo_ratio_inverted, "the ratio is exp(old - new), inverted"),
        (ppo_clip_ignored, "the clip argument was ignored"),
        (ppo_all_positions, "averaged over all positions"),
        (ppo_row_means, "each row's mean, then the mean of the rows"),
        (ppo_sum, "summed over the masked tokens"),
        (ppo_sign, "the sign is flipped"),
        (ppo_log_clip, "clipped the log-ratio"),
        (ppo_broadcast_pos, "were spread along pos"),
        (ppo_per_token, "one loss per token"),
        (ppo_old_not_detached, "the gradient reached old_logprobs"),
        (ppo_detached_clip, "right value but the wrong gradient"),
        (ppo_no_grad, "carries no gradient"),
        (ppo_cf_log_ratio, "compared the log-ratio with clip"),
        (ppo_cf_active_only, "only the tokens where the clipped term won"),
        (ppo_cf_all_positions, "you counted over all positions"),
        (ppo_cf_one_side, "counted only ratios above 1 + clip"),
        (ppo_cf_count, "the number of clipped tokens"),
        (ppo_cf_inside, "counted the ratios inside"),
        (ppo_cf_clip_ignored, "the clip fraction ignored the clip argument"),
        (ppo_cf_rows, "you averaged it per row"),
        (ppo_loss_only, "should return a tuple (loss, clip_fraction)"),
        (ppo_three_values, "should return 2 values"),
        (ppo_fraction_float, "clip_fraction (second value) is a plain number"),
        (ppo_unknown, "differs from the right answer"),
    ],
    "dpo_loss": [
        (dpo_negative_margin, "the margin has the wrong sign"),
        (dpo_inputs_swapped, "the margin has the wrong sign"),
        (dpo_ref_swapped, "the reference terms are swapped"),
        (dpo_no_ref, "the reference log-probs were left out"),
        (dpo_sum, "summed over the pairs"),
        (dpo_beta_ignored, "the beta argument was ignored"),
        (dpo_no_beta, "beta is missing"),
        (dpo_sigmoid_not_log, "sigmoid(beta h) itself"),
        (dpo_kind_ignored, "kind='ipo' was ignored"),
        (dpo_ipo_one_over_beta, "IPO's target margin is 1/(2 beta), you used 1/beta"),
        (dpo_ipo_scaled, "on the unscaled margin"),
        (dpo_ref_not_detached, "the gradient reached the reference"),
        (dpo_rewards_swapped, "chosen_reward and rejected_reward are swapped"),
        (dpo_rewards_no_beta, "you left out beta"),
        (dpo_rewards_sign, "the rewards have the wrong sign"),
        (dpo_rewards_no_ref, "you left out the reference"),
        (dpo_rewards_beta_ignored, "the rewards ignored the beta argument"),
        (dpo_rewards_reduced, "you reduced them"),
        (dpo_rewards_not_detached, "still carry gradient"),
        (dpo_list, "it returned a list"),
        (dpo_two_values, "should return 3 values"),
        (dpo_no_grad, "carries no gradient"),
        (dpo_probability_ratios, "holds nan or inf where the right answer is finite"),
        (dpo_unknown, "differs from the right answer"),
    ],
}

RIGHT_ANSWERS: dict[str, list[object]] = {
    "masked_sft_loss": [lib.masked_sft_loss, sft_right_cross_entropy, sft_right_indexing64,
                        sft_right_logsumexp],
    "bradley_terry_loss": [lib.bradley_terry_loss, bt_right_softplus, bt_right_log_of_sigmoid,
                           bt_right_bce, bt_right_log1p64],
    "normalize_rewards": [lib.normalize_rewards, norm_right_manual64, norm_right_var_sqrt,
                          norm_right_std_mean],
    "kl_estimators": [lib.kl_estimators, kl_right_exp, kl_right_ratio64],
    "ppo_clip_loss": [lib.ppo_clip_loss, ppo_right_where, ppo_right_max_of_negatives64],
    "dpo_loss": [lib.dpo_loss, dpo_right_softplus, dpo_right_log_sigmoid64],
}
