"""Bad input is refused at the door: a ValueError that names the argument, the value and the
fix (or, from the CLI, one line on stderr and exit code 2), never a raw error from deep
inside torch and never a silently wrong answer.

Each case is (id, a callable making the bad call, a regex the message must match); the
regex always includes the argument's name. Config validation (ModelConfig, TrainConfig)
lives in its own file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import gptscope as gs
from gptscope.cli import main
from gptscope.model import KVCache, sample_next

V, CTX = 11, 8
GPT = gs.Transformer(gs.ModelConfig(n_layers=2, d_model=16, n_heads=2, d_vocab=V, n_ctx=CTX,
                                    seed=0)).eval()
BERT = gs.Transformer(gs.ModelConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=V, n_ctx=CTX,
                                     causal=False, n_token_types=2, seed=0)).eval()
NAN_GPT = gs.Transformer(GPT.cfg).eval()
with torch.no_grad():
    NAN_GPT.blocks[0].attn.W_Q.fill_(float("nan"))

T = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])  # [batch 2, pos 5]
RESID = torch.randn(2, 5, 16)
LOGITS = torch.randn(2, V)


def case(id: str, call: Callable[[], object], pattern: str):
    return pytest.param(call, pattern, id=id)


def gen(**kw):
    return lambda: GPT.generate(T, **{"max_new_tokens": 2, **kw})


def stream(**kw):  # no iteration: stream checks its arguments when called
    return lambda: GPT.stream(T, **{"max_new_tokens": 2, **kw})


def with_hook(fn, name="hook_embed", **kw):
    return lambda: GPT.run_with_hooks(T, fwd_hooks=[(name, fn)], **kw)


def backward_with(fn):
    def call():
        loss = GPT.run_with_hooks(T, return_type="loss",
                                  bwd_hooks=[("blocks.0.hook_resid_post", fn)])
        loss.backward()
    return call


def as_list(x, hook):
    return [x]


def as_int(x, hook):
    return 3


def to_double(x, hook):
    return x.double()


def first_pos(x, hook):
    return x[:, :1]


def to_meta(x, hook):
    return x.to("meta")


class Halver(torch.nn.Module):
    def forward(self, x):
        return x[..., : x.shape[-1] // 2]


def attach_halver():
    with GPT.attached("blocks.0.hook_resid_pre", Halver()):
        GPT(T)


def full_cache():
    cache = KVCache(GPT.cfg, 2, max_len=4)
    GPT(T[:, :3], past=cache)
    GPT(T[:, 3:], past=cache)


def mask_without_cached_part():
    cache = KVCache(GPT.cfg, 2)
    GPT(T[:, :3], past=cache)
    GPT(T[:, 3:], past=cache, attention_mask=torch.ones(2, 2))


CASES = [
    # -- tokens (to_tokens) ------------------------------------------------------------------
    case("tokens-float", lambda: GPT(T.float()), r"tokens must be integer ids, got dtype "
         r"torch\.float32; use tokens\.long\(\)"),
    case("tokens-bool", lambda: GPT(T > 2), r"tokens must be integer ids, got dtype torch\.bool"),
    case("tokens-complex", lambda: GPT(T.to(torch.complex64)), r"tokens .*complex64"),
    case("tokens-list-float", lambda: GPT([1, 1.5, 2]), r"token ids must be ints, got 1\.5 at "
         r"tokens\[1\]"),
    case("tokens-list-none", lambda: GPT([None, 1]), r"got None at tokens\[0\]"),
    case("tokens-list-str", lambda: GPT([["a", "b"]]), r"got 'a' at tokens\[0\]\[0\]"),
    case("tokens-ragged", lambda: GPT([[1, 2, 3], [1, 2]]), r"tokens rows have different "
         r"lengths \[2, 3\]; pad them .* attention_mask"),
    case("tokens-mixed-nesting", lambda: GPT([[1, 2], 3]), r"tokens mixes lists and single ids"),
    case("tokens-numpy-float", lambda: GPT(np.array([[1.0, 2.0]])), r"tokens .*torch\.float64"),
    case("tokens-numpy-object", lambda: GPT(np.array([[1, "a"]], dtype=object)),
         r"tokens must be an integer array, got numpy dtype object"),
    case("tokens-int", lambda: GPT(5), r"tokens must be a LongTensor \[batch, pos\], got "
         r"<class 'int'>: 5"),
    case("tokens-dict", lambda: GPT({"input_ids": T}), r"tokens must be a LongTensor"),
    case("tokens-3d", lambda: GPT(T[None]), r"tokens must be \[batch, pos\], got shape "
         r"\(1, 2, 5\)"),
    case("tokens-0d", lambda: GPT(torch.tensor(3)), r"tokens must be \[batch, pos\], got shape "
         r"\(\)"),
    case("tokens-empty", lambda: GPT(torch.zeros(2, 0, dtype=torch.long)), r"tokens are empty"),
    case("tokens-negative", lambda: GPT(torch.tensor([[1, -1]])), r"token ids must lie in "
         r"\[0, d_vocab=11\); got min -1"),
    case("tokens-too-big", lambda: GPT(torch.tensor([[1, V]])), r"token ids .*max 11"),
    case("tokens-uint8-range", lambda: GPT(torch.tensor([[1, 200]], dtype=torch.uint8)),
         r"token ids must lie in \[0, d_vocab=11\); got min 1, max 200"),
    case("tokens-too-long", lambda: GPT(torch.zeros(1, CTX + 1, dtype=torch.long)),
         r"length 9 exceeds n_ctx=8; keep the last 8 tokens \(tokens\[:, -8:\]\)"),
    case("tokens-string-no-tokenizer", lambda: GPT("hello"), r"tokens is a string \('hello'\) "
         r"but this model has no tokenizer"),
    # -- forward options -------------------------------------------------------------------
    case("return_type-unknown", lambda: GPT(T, return_type="probs"), r"return_type must be one "
         r"of .*'probs'"),
    case("return_type-int", lambda: GPT(T, return_type=1), r"return_type .* got 1"),
    case("loss_per_token-str", lambda: GPT(T, return_type="loss", loss_per_token="yes"),
         r"loss_per_token must be True or False, got 'yes'"),
    case("return_type-loss-one-token", lambda: GPT(T[:, :1], return_type="loss"),
         r"loss needs at least 2 tokens"),
    case("start_at_layer-too-big", lambda: GPT(RESID, start_at_layer=99),
         r"start_at_layer must be an int in \[-2, 2\] \(this model has n_layers=2\), or None; "
         r"got 99"),
    case("stop_at_layer-too-big", lambda: GPT(T, stop_at_layer=99), r"stop_at_layer must be an "
         r"int in \[-2, 2\].*got 99"),
    case("stop_at_layer-too-negative", lambda: GPT(T, stop_at_layer=-3), r"stop_at_layer .*-3"),
    case("start_at_layer-float", lambda: GPT(RESID, start_at_layer=1.5), r"start_at_layer .*1\.5"),
    case("stop_at_layer-bool", lambda: GPT(T, stop_at_layer=True), r"stop_at_layer .*True"),
    case("stop_at_layer-str", lambda: GPT(T, stop_at_layer="1"), r"stop_at_layer .*'1'"),
    case("start_at_layer-after-stop", lambda: GPT(RESID, start_at_layer=2, stop_at_layer=1),
         r"start_at_layer \(2\) comes after stop_at_layer \(1\)"),
    case("start_at_layer-tokens", lambda: GPT(T, start_at_layer=1), r"with start_at_layer, pass "
         r"the residual stream \[batch, pos, d_model=16\], got torch\.Size\(\[2, 5\]\)"),
    case("start_at_layer-int-resid", lambda: GPT(RESID.long(), start_at_layer=1),
         r"with start_at_layer, the residual stream must be a float tensor, got dtype "
         r"torch\.int64"),
    case("start_at_layer-list", lambda: GPT([[0.0] * 16], start_at_layer=1),
         r"start_at_layer, pass the residual stream .*list"),
    case("start_at_layer-too-long", lambda: GPT(torch.randn(1, CTX + 1, 16), start_at_layer=1),
         r"n_ctx=8"),
    # -- attention_mask, token_type_ids, past ------------------------------------------------
    case("attention_mask-shape", lambda: GPT(T, attention_mask=torch.ones(2, 3)),
         r"attention_mask must be a tensor \[batch, pos\] like the tokens, \(2, 5\), got shape "
         r"\(2, 3\)"),
    case("attention_mask-3d", lambda: GPT(T, attention_mask=torch.ones(2, 5, 1)),
         r"attention_mask .*got shape \(2, 5, 1\)"),
    case("attention_mask-list", lambda: GPT(T, attention_mask=[[1] * 5] * 2),
         r"attention_mask must be a tensor .*got \[\[1, 1"),
    case("attention_mask-value-2", lambda: GPT(T, attention_mask=torch.full((2, 5), 2)),
         r"attention_mask must hold only 0 and 1 \(or bools\), got values \[2\]"),
    case("attention_mask-half", lambda: GPT(T, attention_mask=torch.full((2, 5), 0.5)),
         r"attention_mask must hold only 0 and 1 .*0\.5"),
    case("attention_mask-nan", lambda: GPT(T, attention_mask=torch.full((2, 5), float("nan"))),
         r"attention_mask must hold only 0 and 1 .*nan"),
    case("attention_mask-complex", lambda: GPT(T, attention_mask=torch.ones(2, 5,
                                                                            dtype=torch.cfloat)),
         r"attention_mask must be a tensor"),
    case("attention_mask-with-past", mask_without_cached_part,
         r"attention_mask must be a tensor \[batch, cached \+ new positions\], \(2, 5\), got "
         r"shape \(2, 2\)"),
    case("token_type_ids-no-segments", lambda: GPT(T, token_type_ids=torch.zeros_like(T)),
         r"token_type_ids given, but this model has no segment embeddings \(n_token_types=0\)"),
    case("token_type_ids-shape", lambda: BERT(T, token_type_ids=torch.zeros(2, 3,
                                                                             dtype=torch.long)),
         r"token_type_ids must be an integer tensor shaped like the tokens \(2, 5\), got "
         r"torch\.int64 \(2, 3\)"),
    case("token_type_ids-float", lambda: BERT(T, token_type_ids=torch.zeros(2, 5)),
         r"token_type_ids must be an integer tensor .*torch\.float32"),
    case("token_type_ids-range", lambda: BERT(T, token_type_ids=torch.full_like(T, 2)),
         r"token_type_ids must lie in \[0, n_token_types=2\); got min 2, max 2"),
    case("token_type_ids-negative", lambda: BERT(T, token_type_ids=torch.full_like(T, -1)),
         r"token_type_ids must lie in .*min -1"),
    case("token_type_ids-with-residual", lambda: BERT(RESID, start_at_layer=0,
                                                      token_type_ids=torch.zeros_like(T)),
         r"token_type_ids go with token ids, not with start_at_layer"),
    case("past-not-a-cache", lambda: GPT(T, past={}), r"past must be a KVCache or None, got "
         r"dict"),
    case("past-batch", lambda: GPT(T, past=KVCache(GPT.cfg, 3)), r"past \(a KVCache\) was made "
         r"for batch 3, but the input has batch 2"),
    case("past-full", full_cache, r"past \(a KVCache\) holds 4 positions; 3 cached \+ 2 new"),
    case("past-other-model", lambda: GPT(T, past=KVCache(BERT.cfg, 2)), r"past holds 1 layers "
         r"but this model has n_layers=2"),
    case("KVCache-max_len-0", lambda: KVCache(GPT.cfg, 2, max_len=0), r"KVCache max_len must be "
         r"an int in \[1, n_ctx=8\], got 0"),
    case("KVCache-max_len-big", lambda: KVCache(GPT.cfg, 2, max_len=9), r"KVCache max_len .*9"),
    case("KVCache-batch", lambda: KVCache(GPT.cfg, 2.0), r"KVCache batch must be an int >= 1, "
         r"got 2\.0"),
    # -- generate / stream -------------------------------------------------------------------
    case("max_new_tokens-float", gen(max_new_tokens=2.5), r"max_new_tokens must be an int >= 0, "
         r"got 2\.5; pass e\.g\. max_new_tokens=20"),
    case("max_new_tokens-bool", gen(max_new_tokens=True), r"max_new_tokens .*got True"),
    case("max_new_tokens-negative", gen(max_new_tokens=-1), r"max_new_tokens .*got -1"),
    case("max_new_tokens-str", gen(max_new_tokens="3"), r"max_new_tokens .*got '3'"),
    case("temperature-nan", gen(temperature=float("nan")), r"temperature must be a finite "
         r"number >= 0 \(0 = greedy\), got nan; pass e\.g\. temperature=1\.0"),
    case("temperature-inf", gen(temperature=float("inf")), r"temperature .*got inf"),
    case("temperature-str", gen(temperature="1"), r"temperature .*got '1'"),
    case("temperature-bool", gen(temperature=True), r"temperature .*got True"),
    case("temperature-negative", gen(temperature=-1.0), r"temperature .*got -1\.0"),
    case("temperature-tensor", gen(temperature=torch.tensor(1.0)), r"temperature .*tensor"),
    case("top_k-float", gen(top_k=2.5), r"top_k must be an int >= 1 or None, got 2\.5"),
    case("top_k-zero", gen(top_k=0), r"top_k .*got 0"),
    case("top_k-bool", gen(top_k=True), r"top_k .*got True"),
    case("top_p-zero", gen(top_p=0), r"top_p must be a number in \(0, 1\] or None, got 0"),
    case("top_p-big", gen(top_p=1.5), r"top_p .*got 1\.5"),
    case("top_p-str", gen(top_p="0.9"), r"top_p .*got '0\.9'"),
    case("top_p-nan", gen(top_p=float("nan")), r"top_p .*got nan"),
    case("seed-float", gen(seed=1.5), r"seed must be an int in \[0, 2\*\*64\) or None, got 1\.5"),
    case("seed-str", gen(seed="0"), r"seed .*got '0'"),
    case("seed-negative", gen(seed=-1), r"seed .*got -1"),
    case("use_cache-str", gen(use_cache="yes"), r"use_cache must be True or False, got 'yes'"),
    case("use_cache-int", gen(use_cache=1), r"use_cache .*got 1"),
    case("on_overflow-unknown", gen(on_overflow="wrap"), r"on_overflow must be 'slide' or "
         r"'error', got 'wrap'"),
    case("on_overflow-none", gen(on_overflow=None), r"on_overflow .*got None"),
    case("on_overflow-error-overflows", gen(max_new_tokens=4, on_overflow="error"),
         r"prompt \(5\) \+ max_new_tokens \(4\) exceeds n_ctx=8"),
    case("generate-encoder", lambda: BERT.generate(T, 2), r"causal=False"),
    case("generate-nan-weights", lambda: NAN_GPT.generate(T, 2, temperature=0),
         r"generation step 0 produced logits that are not finite \(NaN in rows \[0, 1\]\)"),
    case("generate-tokens", lambda: GPT.generate([1, 2.5], 2), r"tokens\[1\]"),
    case("stream-max_new_tokens", stream(max_new_tokens=2.5), r"max_new_tokens .*2\.5"),
    case("stream-temperature", stream(temperature=-1), r"temperature .*-1"),
    case("stream-stop_tokens", stream(stop_tokens=[None]), r"stop_tokens .*None"),
    case("stop_tokens-none-entry", gen(stop_tokens=[None]), r"stop_tokens must be ints in "
         r"\[0, d_vocab=11\), got None; pass ids the tokenizer produced"),
    case("stop_tokens-out-of-range", gen(stop_tokens=[1, 99]), r"stop_tokens .*got 99"),
    case("stop_tokens-negative-int", gen(stop_tokens=-1), r"stop_tokens .*got -1"),
    case("stop_tokens-float-entry", gen(stop_tokens=[1.5]), r"stop_tokens .*got 1\.5"),
    case("stop_tokens-str", gen(stop_tokens="\n"), r"stop_tokens must be token ids .*"
         r"model\.tokenizer\.encode"),
    case("stop_tokens-float", gen(stop_tokens=3.0), r"stop_tokens must be token ids .*3\.0"),
    case("stop_tokens-float-tensor", gen(stop_tokens=torch.tensor([1.0])), r"stop_tokens must "
         r"hold integer token ids, got a torch\.float32 tensor"),
    case("stop_tokens-bool-tensor", gen(stop_tokens=torch.tensor([True])), r"stop_tokens .*bool"),
    case("stop_tokens-tensor-range", gen(stop_tokens=torch.tensor([[0, 11]])),
         r"stop_tokens .*got 11"),
    # -- sample_next -------------------------------------------------------------------------
    case("sample_next-temperature", lambda: sample_next(LOGITS, temperature=-1),
         r"temperature .*-1"),
    case("sample_next-top_k", lambda: sample_next(LOGITS, top_k=1.5), r"top_k .*1\.5"),
    case("sample_next-top_p", lambda: sample_next(LOGITS, top_p=2), r"top_p .*got 2"),
    case("sample_next-int-logits", lambda: sample_next(T), r"logits must be a float tensor "
         r"\[batch, d_vocab\], got a torch\.int64 tensor of shape \(2, 5\)"),
    case("sample_next-list", lambda: sample_next([[0.1, 0.2]]), r"logits must be a float "
         r"tensor .*list"),
    case("sample_next-3d", lambda: sample_next(LOGITS[None]), r"logits .*\(1, 2, 11\)"),
    case("sample_next-nan", lambda: sample_next(torch.full((2, V), float("nan"))),
         r"sample_next got logits that are not finite \(NaN in rows \[0, 1\]\)"),
    case("sample_next-all-banned", lambda: sample_next(torch.full((1, V), float("-inf"))),
         r"logits .*-inf everywhere \(every token banned\) in rows \[0\]"),
    case("sample_next-posinf", lambda: sample_next(LOGITS.index_fill(1, torch.tensor([3]),
                                                                     float("inf"))),
         r"logits .*\+inf in rows \[0, 1\]"),
    case("sample_next-generator", lambda: sample_next(LOGITS, generator=0), r"generator must be "
         r"a torch\.Generator or None, got int"),
    # -- hooks -------------------------------------------------------------------------------
    case("hook-returns-list", with_hook(as_list), r"hook function as_list on hook_embed "
         r"returned list, expected a Tensor"),
    case("hook-returns-int", with_hook(as_int), r"hook function as_int on hook_embed returned "
         r"int"),
    case("hook-returns-dtype", with_hook(to_double, "blocks.0.hook_resid_pre"),
         r"hook function to_double on blocks\.0\.hook_resid_pre returned dtype torch\.float64, "
         r"expected torch\.float32; return a tensor of the input's dtype "
         r"\(x\.to\(torch\.float32\)\) or None"),
    case("hook-returns-shape", with_hook(first_pos), r"hook function first_pos on hook_embed "
         r"returned shape \(2, 1, 16\), expected \(2, 5, 16\)"),
    case("hook-returns-device", with_hook(to_meta, "blocks.1.attn.hook_z"),
         r"hook function to_meta on blocks\.1\.attn\.hook_z returned device meta, expected cpu"),
    case("hook-lambda", with_hook(lambda x, h: x.half()), r"hook function <lambda> on "
         r"hook_embed returned dtype torch\.float16"),
    case("hook-in-generate", lambda: _generate_with_hook(to_double), r"hook function to_double "
         r"on blocks\.1\.hook_resid_pre returned dtype"),
    case("bwd-hook-returns-dtype", backward_with(to_double), r"backward hook function "
         r"to_double on blocks\.0\.hook_resid_post returned dtype torch\.float64"),
    case("bwd-hook-returns-list", backward_with(as_list), r"backward hook function as_list on "
         r"blocks\.0\.hook_resid_post returned list"),
    case("fwd_hooks-single-pair", lambda: GPT.run_with_hooks(T, fwd_hooks=("hook_embed",
                                                                           as_list)),
         r"fwd_hooks\[0\] must be a \(hook name or filter, fn\) pair, got 'hook_embed'; "
         r"fwd_hooks is a list of pairs"),
    case("fwd_hooks-str", lambda: GPT.run_with_hooks(T, fwd_hooks="hook_embed"),
         r"fwd_hooks must be a list of \(hook name or filter, fn\) pairs, got 'hook_embed'"),
    case("fwd_hooks-dict", lambda: GPT.run_with_hooks(T, fwd_hooks={"hook_embed": as_list}),
         r"fwd_hooks must be a list"),
    case("fwd_hooks-not-callable", lambda: GPT.run_with_hooks(T, fwd_hooks=[("hook_embed",
                                                                             "fn")]),
         r"fwd_hooks\[0\] = \('hook_embed', 'fn'\): the second item must be a function"),
    case("fwd_hooks-triple", lambda: GPT.run_with_hooks(T, fwd_hooks=[("hook_embed", as_list,
                                                                        1)]),
         r"fwd_hooks\[0\] must be a \(hook name or filter, fn\) pair"),
    case("fwd_hooks-int-name", lambda: GPT.run_with_hooks(T, fwd_hooks=[(3, as_list)]),
         r"fwd_hooks\[0\] must be a hook name, a list of hook names or a function"),
    case("fwd_hooks-unknown-name", lambda: GPT.run_with_hooks(T, fwd_hooks=[("hook_embedd",
                                                                             as_list)]),
         r"unknown hook name 'hook_embedd'; did you mean 'hook_embed'"),
    case("bwd_hooks-bad-entry", lambda: GPT.run_with_hooks(T, bwd_hooks=[as_list]),
         r"bwd_hooks\[0\] must be a \(hook name or filter, fn\) pair"),
    case("hooks-context-bad-entry", lambda: GPT.hooks(fwd_hooks=[1]).__enter__(),
         r"fwd_hooks\[0\] must be a \(hook name or filter, fn\) pair, got 1"),
    case("names_filter-int", lambda: GPT.run_with_cache(T, names_filter=3),
         r"names_filter must be a hook name, a list of hook names or a function name -> bool, "
         r"got 3"),
    case("names_filter-list-of-int", lambda: GPT.run_with_cache(T, names_filter=[1]),
         r"names_filter .*got \[1\]"),
    case("names_filter-bytes", lambda: GPT.run_with_cache(T, names_filter=b"hook_embed"),
         r"names_filter .*b'hook_embed'"),
    case("names_filter-hookpoint", lambda: GPT.run_with_cache(T, names_filter=GPT.hook_embed),
         r"names_filter got the module .*; pass its name"),
    case("names_filter-unknown", lambda: GPT.run_with_cache(T, names_filter="hook_embedd"),
         r"unknown hook name 'hook_embedd'"),
    case("incl_bwd-str", lambda: GPT.run_with_cache(T, incl_bwd="yes"), r"incl_bwd must be True "
         r"or False, got 'yes'"),
    case("run_with_cache-device", lambda: GPT.run_with_cache(T, device="gpu0"),
         r"device must be a torch device such as 'cpu' or 'cuda', got 'gpu0'"),
    case("attach-hook_name-int", lambda: GPT.attach(3, Halver()), r"hook_name must be one "
         r"hook's name \(a str\), got 3"),
    case("attached-module-shape", attach_halver, r"module Halver attached at "
         r"blocks\.0\.hook_resid_pre returned shape \(2, 5, 8\), expected \(2, 5, 16\)"),
]


def _generate_with_hook(fn):
    with GPT.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", fn)]):
        GPT.generate(T, 2)


@pytest.mark.parametrize("call, pattern", CASES)
def test_bad_input_raises_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
    # A refused call leaves nothing attached.
    for model in (GPT, BERT):
        assert all(not p.fwd_fns and not p.bwd_fns and p.splice is None
                   for p in model.hook_dict.values())


def test_the_table_is_large_and_its_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 70 and len(set(ids)) == len(ids)


# -- the CLI: one line on stderr, exit code 2 -------------------------------------------------


def corrupt_progress(tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setenv("GPTSCOPE_HOME", str(tmp))
    (tmp / "progress.sqlite").write_bytes(b"not a database " * 20)
    return ["learn"]


def corrupt_progress_write(tmp: Path, monkeypatch) -> list[str]:
    corrupt_progress(tmp, monkeypatch)
    return ["learn", "note", "04", "a note"]


def home_unwritable(tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setenv("GPTSCOPE_HOME", "/proc/gptscope-test/home")
    return ["learn"]


def home_is_a_file(tmp: Path, monkeypatch) -> list[str]:
    (tmp / "file").write_text("x")
    monkeypatch.setenv("GPTSCOPE_HOME", str(tmp / "file" / "home"))
    return ["learn", "read", "04", "1"]


def export_unwritable(tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setenv("GPTSCOPE_HOME", str(tmp))
    return ["learn", "export", "--out", "/proc/gptscope-test/notes.md"]


def report_bad_config(content: bytes):
    def argv(tmp: Path, monkeypatch) -> list[str]:
        gs.save(GPT, tmp / "run")
        (tmp / "run" / "config.json").write_bytes(content)
        return ["report", str(tmp / "run")]
    return argv


def train_out_unwritable(tmp: Path, monkeypatch) -> list[str]:
    return ["train", "--out", "/proc/gptscope-test/run", "--task", "reverse", "--max-steps", "1",
            "--no-progress"]


CLI_CASES = [
    pytest.param(corrupt_progress, r"progress database .*progress\.sqlite cannot be used "
                 r"\(DatabaseError: file is not a database\); if it is corrupt, move it aside",
                 id="learn-corrupt-progress"),
    pytest.param(corrupt_progress_write, r"progress database .*progress\.sqlite",
                 id="learn-note-corrupt-progress"),
    pytest.param(home_unwritable, r"/proc/gptscope-test", id="learn-home-unwritable"),
    pytest.param(home_is_a_file, r"file", id="learn-home-under-a-file"),
    pytest.param(export_unwritable, r"cannot use /proc/gptscope-test", id="export-out-unwritable"),
    pytest.param(report_bad_config(b"\xff\xfe not utf-8"), r"(?i)config\.json.*utf-8",
                 id="report-config-not-utf8"),
    pytest.param(report_bad_config(b"{not json"), r"config\.json", id="report-config-not-json"),
    pytest.param(train_out_unwritable, r"/proc/gptscope-test", id="train-out-unwritable"),
]


@pytest.mark.parametrize("argv, pattern", CLI_CASES)
def test_cli_reports_one_line(argv, pattern, tmp_path, monkeypatch, capsys):
    args = argv(tmp_path, monkeypatch)
    code = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"gptscope {args[0]}: error: "), err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


def test_cli_keeps_a_library_diff_indented_under_one_error_line(monkeypatch, capsys):
    import gptscope.cli as cli

    def boom(args):
        raise ValueError("first line\n  second line\n\nthird\n")

    parser = cli.build_parser()
    args = parser.parse_args(["learn"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, boom))
    assert cli.main(["learn"]) == 2
    assert capsys.readouterr().err == ("gptscope learn: error: first line\n  second line\n"
                                       "  third\n")


def test_cli_prints_warnings_on_one_line(monkeypatch, capsys):
    import warnings

    import gptscope.cli as cli

    def warn(args):
        warnings.warn("checkpoint x is unusable", stacklevel=1)
        return 0

    parser = cli.build_parser()
    args = parser.parse_args(["learn"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, warn))
    assert cli.main(["learn"]) == 0
    assert capsys.readouterr().err == "gptscope learn: warning: checkpoint x is unusable\n"


class _Fixed:
    """A parser stand-in whose parse_args returns ``args`` with ``func`` replaced."""

    def __init__(self, parser, args, func):
        self.parser, self.args = parser, args
        self.args.func = func

    def parse_args(self, argv):
        return self.args

    def print_help(self):
        self.parser.print_help()
