#!/usr/bin/env python3
"""Train a small Mamba-1 (S6) language model and write the model directory decimamba loads.

    PYTHONUNBUFFERED=1 python3 tools/train/train_mamba.py --data .corpus/tok --out OUT_DIR \
        [--time-budget 420] [--d-model 320] [--n-layer 8] [--ctx 512] [--batch 64] [--smoke]

Runs where PyTorch and a CUDA GPU are (the GPU host); falls back to the CPU for --smoke.
Input: the folder written by tools/train/train_tokenizer.py (tokenizer.model, train.bin,
train_docs.tsv, eval.bin, fillers.txt). Output in OUT_DIR:
  config.json            Hugging Face MambaConfig dialect, "dtype": "float16"
  model.safetensors      F16, Hugging Face MambaForCausalLM tensor names, tied embeddings
  tokenizer.model        copied from --data
  train_log.json         settings, seeds, loss curve, held-out evaluations, checks, samples
  samples.json           greedy continuations (token ids and text) from the saved F16 weights

The model is plain PyTorch with the same maths and parameter names as transformers'
MambaForCausalLM, so its state dict saves directly under HF names. The selective scan is a custom
autograd function: a chunked scan in fp32 (sequential within chunks of --chunk tokens, all chunks
in parallel, then a carry pass across chunks with exact in-chunk decay factors exp(A * cumsum Δ),
which are <= 1, so nothing overflows), with a hand-written backward that recomputes the states.
Before training the script checks it against a plain sequential loop (forward and gradients,
max relative error < 1e-4) and checks that transformers' MambaForCausalLM, loading the saved
directory, computes the same logits as this model.

Training data: language modelling on random windows of the training split (sources weighted by
--source-weights) mixed with passkey examples in the DeciMamba template (decimamba-spec.md 4.2),
a --passkey-frac share of the sequences; the key's tokens after "Answer:" weigh --answer-weight
in the loss. Residual dropout (--dropout) is used in training only; the saved model has none.
The held-out split (Emma, Persuasion) is evaluated every --eval-every steps and the checkpoint
with the lowest held-out loss is the one saved. The learning-rate schedule is fixed in steps: after
--calib-steps steps the script measures the step time and sets the total step count so that
training ends inside --time-budget seconds; the count is recorded in train_log.json.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PASSKEY_PREFIX = ("There is an important pass key hidden inside a lot of irrelevant text. "
                  "Find it and memorize it:\n")
PASSKEY_NEEDLE = "The pass key is {k}. Remember it. {k} is the pass key. "
PASSKEY_SUFFIX = "\nAnswer: "


# ----------------------------------------------------------------------------------------------
# Selective scan
# ----------------------------------------------------------------------------------------------

def _chunk_states(u, delta, A, Bm, T):
    """All SSM states h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t, h_{-1} = 0.
    u, delta: (b, L, D); A: (D, N); Bm: (b, L, N); L a multiple of T. Returns (b, L, D, N)."""
    b, L, D = u.shape
    N = A.shape[1]
    nc = L // T
    dl = delta.view(b, nc, T, D)
    a = torch.exp(dl.unsqueeze(-1) * A)                                   # (b, nc, T, D, N)
    h = (delta * u).view(b, nc, T, D, 1) * Bm.view(b, nc, T, 1, N)        # (b, nc, T, D, N) = Δ u B
    for t in range(1, T):                                                 # in-chunk, chunks in parallel
        h[:, :, t].addcmul_(a[:, :, t], h[:, :, t - 1])
    del a
    S = torch.cumsum(dl, dim=2)                                           # (b, nc, T, D) in-chunk ΣΔ
    ptot = torch.exp(S[:, :, -1].unsqueeze(-1) * A)                       # (b, nc, D, N) chunk decay
    carries = torch.empty(b, nc, D, N, dtype=u.dtype, device=u.device)
    c = torch.zeros(b, D, N, dtype=u.dtype, device=u.device)
    for k in range(nc):                                                   # state entering chunk k
        carries[:, k] = c
        c = torch.addcmul(h[:, k, T - 1], ptot[:, k], c)
    h.addcmul_(torch.exp(S.unsqueeze(-1) * A), carries.unsqueeze(2))
    return h.view(b, L, D, N)


def _chunk_adjoint(dy, delta, A, Cm, T):
    """Adjoint states g_t = dLoss/dh_t = dy_t ⊗ C_t + exp(Δ_{t+1} A) g_{t+1}. Returns (b, L, D, N)."""
    b, L, D = dy.shape
    N = A.shape[1]
    nc = L // T
    dl = delta.view(b, nc, T, D)
    a = torch.exp(dl.unsqueeze(-1) * A)                                   # (b, nc, T, D, N)
    g = dy.view(b, nc, T, D, 1) * Cm.view(b, nc, T, 1, N)
    for t in range(T - 2, -1, -1):
        g[:, :, t].addcmul_(a[:, :, t + 1], g[:, :, t + 1])
    a0 = a[:, :, 0].clone()                                               # (b, nc, D, N) decay into chunk start
    del a
    S = torch.cumsum(dl, dim=2)
    suf = (S[:, :, -1:] - S).clamp_min_(0)                                # Σ_{s=t+1}^{T-1} Δ_s, (b, nc, T, D)
    q0 = torch.exp(suf[:, :, 0].unsqueeze(-1) * A)                        # (b, nc, D, N)
    X = torch.empty(b, nc, D, N, dtype=dy.dtype, device=dy.device)
    x = torch.zeros(b, D, N, dtype=dy.dtype, device=dy.device)
    for k in range(nc - 1, -1, -1):                                       # flow from chunk k+1 into chunk k
        X[:, k] = x
        g0 = torch.addcmul(g[:, k, 0], q0[:, k], x)                       # true g at chunk k's first token
        x = a0[:, k] * g0
    g.addcmul_(torch.exp(suf.unsqueeze(-1) * A), X.unsqueeze(2))
    return g.view(b, L, D, N)


REDUCE_MODE = "bmm"  # how the (b, L, D, N) contractions run: "bmm" or "ew"; set by pick_scan_config


def _contract_dn(h, v):
    """(b, L, D, N) x (b, L, N) -> (b, L, D): sum over N."""
    b, L, D, N = h.shape
    if REDUCE_MODE == "bmm":
        return torch.matmul(h.view(b * L, D, N), v.reshape(b * L, N, 1)).view(b, L, D)
    return (h * v.unsqueeze(2)).sum(-1)


def _contract_d(h, v):
    """(b, L, D, N) x (b, L, D) -> (b, L, N): sum over D."""
    b, L, D, N = h.shape
    if REDUCE_MODE == "bmm":
        return torch.matmul(v.reshape(b * L, 1, D), h.view(b * L, D, N)).view(b, L, N)
    return (h * v.unsqueeze(-1)).sum(2)


class _SelectiveScan(torch.autograd.Function):
    """y_t = C_t · h_t with h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t (no D skip, no gate)."""

    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm, T):
        b, L, D = u.shape
        h = _chunk_states(u, delta, A, Bm, T)                             # (b, L, D, N)
        y = _contract_dn(h, Cm)
        ctx.save_for_backward(u, delta, A, Bm, Cm)
        ctx.T = T
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, Bm, Cm = ctx.saved_tensors
        T = ctx.T
        b, L, D = u.shape
        N = A.shape[1]
        dy = dy.contiguous().to(u.dtype)
        h = _chunk_states(u, delta, A, Bm, T)                             # (b, L, D, N)
        dC = _contract_d(h, dy)
        g = _chunk_adjoint(dy, delta, A, Cm, T)                           # (b, L, D, N)
        du_ = delta * u
        dB = _contract_d(g, du_)
        ddu = _contract_dn(g, Bm)
        du = ddu * delta
        ddelta = ddu * u
        # Through the decay: dLoss/da_t = g_t h_{t-1}; a_t = exp(Δ_t A).
        E = g                                                             # reuse g's memory
        E[:, 1:].mul_(h[:, :-1])
        E[:, 0].zero_()
        del h
        E.mul_(torch.exp(delta.unsqueeze(-1) * A))                        # E = g_t h_{t-1} a_t
        ddelta.add_((E * A).sum(-1))
        dA = torch.einsum("ldn,ld->dn", E.view(b * L, D, N), delta.reshape(b * L, D))
        return du, ddelta, dA, dB, dC, None


def selective_scan(u, delta, A, Bm, Cm, chunk=32):
    """u, delta: (b, L, D) fp32 (delta after softplus); A: (D, N); Bm, Cm: (b, L, N) -> y (b, L, D)."""
    L = u.shape[1]
    T = min(chunk, L)
    pad = (-L) % T
    if pad:  # Δ = 0 and u = 0 at the padding: decay 1, no input, outputs dropped
        u, delta = F.pad(u, (0, 0, 0, pad)), F.pad(delta, (0, 0, 0, pad))
        Bm, Cm = F.pad(Bm, (0, 0, 0, pad)), F.pad(Cm, (0, 0, 0, pad))
    y = _SelectiveScan.apply(u.contiguous(), delta.contiguous(), A.contiguous(),
                             Bm.contiguous(), Cm.contiguous(), T)
    return y[:, :L]


def pick_scan_config(device, b, L, D, N, chunks=(16, 32, 64), modes=("bmm", "ew")):
    """Time one scan forward+backward at the training shape for each (chunk, mode); keep the fastest."""
    global REDUCE_MODE
    if device.type != "cuda":
        return 32, {}
    g = torch.Generator(device="cpu").manual_seed(1)
    u = torch.randn(b, L, D, generator=g).to(device).requires_grad_()
    delta = F.softplus(torch.randn(b, L, D, generator=g) - 2).to(device).requires_grad_()
    A = (-torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)).to(device).requires_grad_()
    Bm = torch.randn(b, L, N, generator=g).to(device).requires_grad_()
    Cm = torch.randn(b, L, N, generator=g).to(device).requires_grad_()
    times = {}
    for mode in modes:
        REDUCE_MODE = mode
        for T in chunks:
            for i in range(3):
                if i == 1:
                    torch.cuda.synchronize()
                    t0 = time.time()
                selective_scan(u, delta, A, Bm, Cm, T).sum().backward()
            torch.cuda.synchronize()
            times["%s/%d" % (mode, T)] = (time.time() - t0) / 2
    best = min(times, key=times.get)
    REDUCE_MODE = best.split("/")[0]
    del u, delta, A, Bm, Cm
    torch.cuda.empty_cache()
    return int(best.split("/")[1]), times


def scan_reference(u, delta, A, Bm, Cm):
    b, L, D = u.shape
    h = torch.zeros(b, D, A.shape[1], dtype=u.dtype, device=u.device)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1))
    return torch.stack(ys, 1)


def check_scan(device, dtype=torch.float32, seed=0):
    """Chunked scan vs a sequential loop, forward and all gradients. Returns max relative errors."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    b, L, D, N = 2, 77, 24, 16
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    u = mk(b, L, D)
    delta = F.softplus(mk(b, L, D) - 1.0)
    A = -torch.exp(torch.log(torch.arange(1, N + 1, dtype=torch.float64)).repeat(D, 1) + 0.1 * mk(D, N))
    Bm, Cm, w = mk(b, L, N), mk(b, L, N), mk(b, L, D)
    ins = [x.to(device=device, dtype=dtype).requires_grad_() for x in (u, delta, A, Bm, Cm)]
    refs = [x.to(device=device, dtype=torch.float64).requires_grad_() for x in (u, delta, A, Bm, Cm)]
    res = {}
    global REDUCE_MODE
    saved = REDUCE_MODE
    for chunk, REDUCE_MODE in ((8, "bmm"), (16, "bmm"), (16, "ew")):
        for x in ins:
            x.grad = None
        y = selective_scan(*ins, chunk=chunk)
        (y * w.to(device, dtype)).sum().backward()
        for x in refs:
            x.grad = None
        yr = scan_reference(*refs)
        (yr * w.to(device)).sum().backward()
        rel = lambda a, r: ((a.double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
        errs = {"y": rel(y, yr)}
        for name, x, r in zip(("du", "ddelta", "dA", "dB", "dC"), ins, refs):
            errs[name] = rel(x.grad, r.grad)
        res["chunk%d_%s" % (chunk, REDUCE_MODE)] = errs
    REDUCE_MODE = saved
    worst = max(v for e in res.values() for v in e.values())
    return worst, res


# ----------------------------------------------------------------------------------------------
# Model (HF MambaForCausalLM names and maths)
# ----------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return self.weight.float() * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps))


class MambaMixer(nn.Module):
    def __init__(self, cfg, n_layer):
        super().__init__()
        d, D, N, R, K = cfg["hidden_size"], cfg["intermediate_size"], cfg["state_size"], cfg["time_step_rank"], cfg["conv_kernel"]
        self.D_inner, self.N, self.R, self.chunk = D, N, R, 32
        self.in_proj = nn.Linear(d, 2 * D, bias=cfg["use_bias"])
        self.conv1d = nn.Conv1d(D, D, K, groups=D, padding=K - 1, bias=cfg["use_conv_bias"])
        self.x_proj = nn.Linear(D, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, D, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(D, 1))
        self.D = nn.Parameter(torch.ones(D))
        self.out_proj = nn.Linear(D, d, bias=cfg["use_bias"])
        # mamba_ssm / HF initialisation of the Δ path; out_proj rescaled by 1/sqrt(n_layer).
        with torch.no_grad():
            std = R ** -0.5 * cfg["time_step_scale"]
            self.dt_proj.weight.uniform_(-std, std)
            dt = torch.exp(torch.rand(D) * (math.log(cfg["time_step_max"]) - math.log(cfg["time_step_min"]))
                           + math.log(cfg["time_step_min"])).clamp_min(cfg["time_step_floor"])
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.out_proj.weight.div_(math.sqrt(n_layer))

    def forward(self, h, keep=None):                                      # h: (b, L, d)
        """keep = (K, r): DeciMamba at this layer (decimamba-spec.md 1-2): the K tokens of the
        first L - r with the largest ||Δ||_2 over channels, in order, then the last r. Returns
        (out (b, K + r, d), idx (b, K + r)); without keep, or when nothing would be dropped,
        (out (b, L, d), None)."""
        L = h.shape[1]
        x, z = self.in_proj(h).chunk(2, dim=-1)                           # (b, L, D) each
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2))  # (b, L, D) conv + SiLU
        dt, Bm, Cm = self.x_proj(x).split([self.R, self.N, self.N], dim=-1)
        delta = F.softplus(self.dt_proj(dt).float())                      # (b, L, D), bias inside
        idx = None
        self.last_scores = None
        if keep is not None and L - keep[1] > keep[0]:
            K, r = keep
            score = delta[:, :L - r].norm(dim=-1)                         # (b, L - r)
            self.last_scores = score
            top = score.topk(K, dim=-1, sorted=False).indices.sort(dim=-1).values
            tail = torch.arange(L - r, L, device=h.device).expand(h.shape[0], r)
            idx = torch.cat([top, tail], dim=1)                           # (b, K + r) ascending
            g = lambda t: t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
            x, z, delta, Bm, Cm = g(x), g(z), g(delta), g(Bm), g(Cm)
        A = -torch.exp(self.A_log.float())                                # (D, N)
        xf = x.float()
        y = selective_scan(xf, delta, A, Bm.float(), Cm.float(), self.chunk)
        y = (y + xf * self.D.float()) * F.silu(z.float())                 # (b, L', D)
        out = self.out_proj(y)
        return out if keep is None else (out, idx)


class MambaBlock(nn.Module):
    def __init__(self, cfg, n_layer, dropout=0.0):
        super().__init__()
        self.norm = RMSNorm(cfg["hidden_size"], cfg["layer_norm_epsilon"])
        self.mixer = MambaMixer(cfg, n_layer)
        self.drop = nn.Dropout(dropout)  # training only (identity in eval); not part of the HF maths

    def forward(self, h, keep=None):
        if keep is None:
            return h.float() + self.drop(self.mixer(self.norm(h)).float())    # residual in fp32
        out, idx = self.mixer(self.norm(h), keep)
        if idx is not None:                                               # the residual is shortened too
            h = h.gather(1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        return h.float() + self.drop(out.float())


class Backbone(nn.Module):
    def __init__(self, cfg, dropout=0.0):
        super().__init__()
        n = cfg["num_hidden_layers"]
        self.embeddings = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([MambaBlock(cfg, n, dropout) for _ in range(n)])
        self.norm_f = RMSNorm(cfg["hidden_size"], cfg["layer_norm_epsilon"])
        nn.init.normal_(self.embeddings.weight, std=0.02)


class MambaLM(nn.Module):
    def __init__(self, cfg, dropout=0.0):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg, dropout)

    def forward(self, ids, deci=None):                                    # (b, L) -> logits (b, L', V)
        """deci = {"layers": [...], "L_base": ..., "beta": ..., "min_seq_len": ..., "r": protected
        tail}: DeciMamba as decimamba-spec.md 2.1; the logits are of the surviving positions (the
        last r positions are always the last r of the input)."""
        h = self.backbone.embeddings(ids)
        for i, layer in enumerate(self.backbone.layers):
            if deci is not None and i in deci["layers"]:
                s = deci["layers"].index(i)
                Lc = h.shape[1] - deci["r"]
                K = int(max(min(Lc, deci["L_base"] * deci.get("beta", 1.0) ** s), deci.get("min_seq_len", 20)))
                h = layer(h, (min(K, Lc), deci["r"]))
            else:
                h = layer(h)
        h = self.backbone.norm_f(h)
        return F.linear(h.to(self.backbone.embeddings.weight.dtype) if not torch.is_autocast_enabled() else h,
                        self.backbone.embeddings.weight)


def make_config(a, vocab_size, bos, eos):
    return {
        "architectures": ["MambaForCausalLM"],
        "model_type": "mamba",
        "vocab_size": vocab_size,
        "hidden_size": a.d_model,
        "intermediate_size": 2 * a.d_model,
        "state_size": 16,
        "num_hidden_layers": a.n_layer,
        "layer_norm_epsilon": 1e-5,
        "expand": 2,
        "conv_kernel": 4,
        "time_step_rank": math.ceil(a.d_model / 16),
        "time_step_scale": 1.0,
        "time_step_min": 0.001,
        "time_step_max": 0.1,
        "time_step_init_scheme": "random",
        "time_step_floor": 1e-4,
        "use_bias": False,
        "use_conv_bias": True,
        "hidden_act": "silu",
        "initializer_range": 0.1,
        "residual_in_fp32": True,
        "rescale_prenorm_residual": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "dtype": "float16",
    }


def save_model_dir(model, cfg, out, tok_path, extra_cfg=None):
    from safetensors.torch import save_file
    os.makedirs(out, exist_ok=True)
    sd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    c = dict(cfg)
    if extra_cfg:
        c.update(extra_cfg)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    shutil.copy(tok_path, os.path.join(out, "tokenizer.model"))


def load_f16_as_f32(cfg, path, device):
    from safetensors.torch import load_file
    m = MambaLM(cfg)
    m.load_state_dict({k: v.float() for k, v in load_file(os.path.join(path, "model.safetensors")).items()})
    return m.to(device).eval()


def check_against_hf(out, cfg, device, ids):
    """Load OUT with transformers' MambaForCausalLM (fp32) and compare logits with this model."""
    try:
        from transformers import MambaForCausalLM
    except Exception as e:  # noqa: BLE001
        return {"ok": None, "error": "transformers unavailable: %r" % e}
    ours = load_f16_as_f32(cfg, out, device)
    hf = MambaForCausalLM.from_pretrained(out, dtype=torch.float32).to(device).eval()
    x = torch.tensor([ids], device=device)
    with torch.no_grad():
        lo = ours(x).float()
        lh = hf(x).logits.float()
    err = (lo - lh).abs().max().item()
    rel = err / lh.abs().max().item()
    same_argmax = bool((lo.argmax(-1) == lh.argmax(-1)).all().item())
    return {"ok": rel < 1e-3 and same_argmax, "max_abs_err": err, "max_rel_err": rel,
            "same_argmax": same_argmax, "tokens": len(ids)}


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

class Data:
    def __init__(self, a, sp, rng):
        self.a, self.sp, self.rng = a, sp, rng
        self.train = np.fromfile(os.path.join(a.data, "train.bin"), dtype=np.uint16)
        self.eval = np.fromfile(os.path.join(a.data, "eval.bin"), dtype=np.uint16)
        self.ranges = {}
        for line in open(os.path.join(a.data, "train_docs.tsv")).read().split("\n")[1:]:
            if not line.strip():
                continue
            _, src, start, count = line.split("\t")
            s, e = self.ranges.get(src, (int(start), int(start)))
            self.ranges[src] = (min(s, int(start)), max(e, int(start) + int(count)))
        w = dict(kv.split("=") for kv in a.source_weights.split(",")) if a.source_weights else {}
        self.srcs = sorted(s for s in self.ranges if self.ranges[s][1] - self.ranges[s][0] > a.ctx + 1)
        self.w = np.array([float(w.get(s, 0.0)) if w else float(self.ranges[s][1] - self.ranges[s][0])
                           for s in self.srcs])
        self.w = self.w / self.w.sum()
        self.fillers = [l for l in open(os.path.join(a.data, "fillers.txt"), encoding="utf-8").read().split("\n") if l]
        self.eos = sp.eos_id()

    def lm_window(self, n):
        src = self.srcs[self.rng.choice(len(self.srcs), p=self.w)]
        s, e = self.ranges[src]
        o = int(self.rng.integers(s, e - n))
        return self.train[o:o + n].astype(np.int64)

    def passkey_text(self, n_tokens, depth, key, rng):
        """Template text whose encoding is at most about n_tokens tokens (before the key)."""
        budget = max(0, n_tokens - 48) * 4.0                              # ~4 bytes a token
        sents, size = [], 0
        while size < budget:
            s = self.fillers[rng.randrange(len(self.fillers))]
            sents.append(s)
            size += len(s) + 1
        return sents

    def build_passkey(self, sents, depth, key):
        k = int(round(depth * len(sents)))
        before, after = sents[:k], sents[k:]
        text = PASSKEY_PREFIX + "".join(s + " " for s in before) + PASSKEY_NEEDLE.format(k=key) \
            + " ".join(after) + PASSKEY_SUFFIX
        return text

    def passkey_ids(self, n_tokens, depth, key, rng):
        """Prompt ids (ending with 'Answer: ') of at most n_tokens tokens, and the key's ids."""
        sents = self.passkey_text(n_tokens, depth, key, rng)
        key_ids = self.sp.encode(str(key))
        while True:
            ids = self.sp.encode(self.build_passkey(sents, depth, key))
            if len(ids) + len(key_ids) <= n_tokens or not sents:
                return ids, key_ids
            drop = max(1, (len(ids) + len(key_ids) - n_tokens) // 40)
            for _ in range(min(drop, len(sents))):
                sents.pop(rng.randrange(len(sents)))

    def passkey_sequence(self, n):
        """n tokens: a passkey example of random length (passkey_min..n) at the start, then </s> and
        corpus text. Also returns the positions of the key's tokens (as targets)."""
        rng = random.Random(int(self.rng.integers(1 << 62)))
        lo = min(self.a.passkey_min, n)
        if self.a.passkey_len == "loguniform":
            target = int(round(math.exp(rng.uniform(math.log(lo), math.log(n)))))
        else:
            target = rng.randint(lo, n)
        key = rng.randint(10000, 99999)
        ids, key_ids = self.passkey_ids(target - 1, rng.random(), key, rng)
        seq = ids + key_ids + [self.eos]
        if len(seq) < n:
            seq = seq + self.lm_window(n - len(seq)).tolist()
        ans = np.zeros(n, dtype=bool)
        ans[len(ids):min(n, len(ids) + len(key_ids))] = True
        return np.asarray(seq[:n], dtype=np.int64), ans

    def batch(self, b, device):
        """(inputs, targets, answer mask over targets): mask marks passkey key tokens."""
        n = self.a.ctx + 1
        rows, masks = [], []
        for _ in range(b):
            if self.rng.random() < self.a.passkey_frac:
                r, m = self.passkey_sequence(n)
            else:
                r, m = self.lm_window(n), np.zeros(n, dtype=bool)
            rows.append(r)
            masks.append(m)
        x = torch.from_numpy(np.stack(rows))
        m = torch.from_numpy(np.stack(masks))
        if device.type == "cuda":
            x = x.pin_memory().to(device, non_blocking=True)
            m = m.pin_memory().to(device, non_blocking=True)
        else:
            x, m = x.to(device), m.to(device)
        return x[:, :-1], x[:, 1:], m[:, 1:]


# ----------------------------------------------------------------------------------------------
# Evaluation helpers
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def heldout_loss(model, data, device, n_seq, ctx, amp):
    ev = data.eval
    step = max(1, (len(ev) - ctx - 1) // n_seq)
    xs = np.stack([ev[i * step:i * step + ctx + 1].astype(np.int64) for i in range(n_seq)])
    x = torch.from_numpy(xs).to(device)
    tot = 0.0
    for i in range(0, n_seq, 8):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            lo = model(x[i:i + 8, :-1])
        tot += F.cross_entropy(lo.float().reshape(-1, lo.shape[-1]), x[i:i + 8, 1:].reshape(-1),
                               reduction="sum").item()
    return tot / (n_seq * ctx)


@torch.no_grad()
def passkey_eval(model, data, device, lengths, depths, keys_per_cell, seed, amp):
    """Teacher-forced greedy check: success if the argmax at every key position is the key token
    (what greedy decoding of the key would produce)."""
    rng = random.Random(seed)
    out = {}
    for L in lengths:
        row = {}
        for d in depths:
            ok = 0
            for _ in range(keys_per_cell):
                key = rng.randint(10000, 99999)
                ids, key_ids = data.passkey_ids(L, d, key, rng)
                x = torch.tensor([ids + key_ids], device=device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    lo = model(x[:, :-1])
                pred = lo[0, len(ids) - 1:].argmax(-1).tolist()
                ok += int(pred == key_ids)
            row[str(d)] = ok / keys_per_cell
        out[str(L)] = row
    return out


@torch.no_grad()
def greedy(model, sp, prompt, n_new, device):
    ids = sp.encode(prompt)
    start = len(ids)
    for _ in range(n_new):
        lo = model(torch.tensor([ids], device=device))
        nxt = int(lo[0, -1].argmax())
        ids.append(nxt)
        if nxt == sp.eos_id():
            break
    return ids[:start], ids[start:]


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--d-model", type=int, default=320)
    ap.add_argument("--dropout", type=float, default=0.1, help="residual dropout, training only")
    ap.add_argument("--answer-weight", type=float, default=5.0,
                    help="loss weight of the passkey key tokens (others 1)")
    ap.add_argument("--passkey-min", type=int, default=64, help="shortest passkey example, tokens")
    ap.add_argument("--passkey-len", choices=("uniform", "loguniform"), default="uniform",
                    help="distribution of passkey example lengths in [passkey-min, ctx]")
    ap.add_argument("--init-from", default="", help="model directory to start from (fine-tuning)")
    ap.add_argument("--keep", choices=("best", "last"), default="best",
                    help="save the lowest held-out-loss checkpoint or the last one")
    ap.add_argument("--n-layer", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=0, help="scan chunk (0: fastest measured)")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--passkey-frac", type=float, default=0.3)
    ap.add_argument("--source-weights",
                    default="austen=0.14,kjv=0.12,web=0.12,jargon=0.08,devil=0.02,foldoc=0.14,gcide=0.38")
    ap.add_argument("--time-budget", type=float, default=450.0, help="seconds of training")
    ap.add_argument("--calib-steps", type=int, default=30)
    ap.add_argument("--max-steps", type=int, default=0, help="cap (0: from the time budget)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--smoke", action="store_true", help="tiny run: checks, a few steps, save")
    a = ap.parse_args()

    t_start = time.time()
    import sentencepiece as spm
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda"
    if a.smoke:
        a.time_budget, a.calib_steps, a.eval_every, a.log_every = min(a.time_budget, 20.0), 5, 10, 5
        if device.type == "cpu":
            a.batch, a.ctx, a.d_model, a.n_layer, a.max_steps = 2, 128, 64, 2, 12
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = False  # keep fp32 GEMMs exact for the checks
    dev_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print("[train] device %s, torch %s" % (dev_name, torch.__version__), flush=True)

    log = {"settings": vars(a).copy(), "device": dev_name, "torch": torch.__version__, "steps": [],
           "evals": [], "checks": {}}

    # 1. Scan check.
    worst, res = check_scan(device)
    print("[train] scan check: worst rel err %.2e %s" % (worst, json.dumps(res)), flush=True)
    log["checks"]["scan"] = {"worst_rel_err": worst, "detail": res}
    assert worst < 1e-4, "chunked scan disagrees with the sequential loop"

    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.data, "tokenizer.model"))
    cfg = make_config(a, sp.get_piece_size(), sp.bos_id(), sp.eos_id())
    if not a.chunk:
        a.chunk, times = pick_scan_config(device, a.batch, a.ctx, 2 * a.d_model, 16)
        print("[train] scan timings (s, fwd+bwd, one layer) %s -> chunk %d, %s" % (
            json.dumps({k: round(v, 4) for k, v in times.items()}), a.chunk, REDUCE_MODE), flush=True)
        log["scan_config"] = {"chunk": a.chunk, "reduce": REDUCE_MODE, "timings": times}
        log["settings"]["chunk"] = a.chunk
    model = MambaLM(cfg, a.dropout).to(device)
    if a.init_from:
        from safetensors.torch import load_file
        icfg = json.load(open(os.path.join(a.init_from, "config.json")))
        for k in ("hidden_size", "num_hidden_layers", "vocab_size", "state_size", "intermediate_size"):
            assert icfg[k] == cfg[k], "--init-from: %s differs (%s vs %s)" % (k, icfg[k], cfg[k])
        sd = load_file(os.path.join(a.init_from, "model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in sd.items()})
        print("[train] initialised from %s" % a.init_from, flush=True)
    for m in model.backbone.layers:
        m.mixer.chunk = a.chunk
    n_params = sum(p.numel() for p in model.parameters())
    print("[train] config %s\n[train] %d parameters (%.1f MB in F16)" % (json.dumps(cfg), n_params, n_params * 2 / 1e6), flush=True)
    log["n_params"] = n_params
    log["config"] = cfg

    # 2. HF check on the untrained model (names and maths), before spending the budget.
    probe = sp.encode("It is a truth universally acknowledged, that a single man in possession")
    os.makedirs(a.out, exist_ok=True)
    tmp = os.path.join(a.out, "_init_check")
    save_model_dir(model, cfg, tmp, os.path.join(a.data, "tokenizer.model"))
    try:
        r = check_against_hf(tmp, cfg, device, probe)
    except Exception as e:  # noqa: BLE001
        r = {"ok": False, "error": repr(e)}
    shutil.rmtree(tmp, ignore_errors=True)
    print("[train] HF check (init): %s" % json.dumps(r), flush=True)
    log["checks"]["hf_init"] = r

    # 3. Train.
    rng = np.random.default_rng(a.seed)
    data = Data(a, sp, rng)
    print("[train] sources %s weights %s; %d train tokens, %d held-out tokens, %d fillers" % (
        data.srcs, np.round(data.w, 3).tolist(), len(data.train), len(data.eval), len(data.fillers)), flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.endswith("A_log")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.endswith("A_log"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    total = a.max_steps or 10 ** 9

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        p = min(1.0, (step - a.warmup) / max(1, total - a.warmup))
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    best = (float("inf"), None, -1)
    t0 = time.time()
    calib_t = None
    step, acc, acc_n, tokens = 0, 0.0, 0, 0
    x, y, am = data.batch(a.batch, device)
    ans_hit, ans_n = 0, 0
    while step < total:
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step)
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        ce = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        wts = 1.0 + (a.answer_weight - 1.0) * am.reshape(-1).float()
        loss = ce.mean()                                                  # logged: plain token CE
        opt.zero_grad(set_to_none=True)
        ((ce * wts).sum() / wts.sum()).backward()
        if (step + 1) % a.log_every == 0:
            with torch.no_grad():
                hit = (logits.argmax(-1) == y) & am
                ans_hit += int(hit.sum())
                ans_n += int(am.sum())
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        x, y, am = data.batch(a.batch, device)  # prepared while the GPU works
        acc += loss.item()
        acc_n += 1
        step += 1
        tokens += a.batch * a.ctx
        if step == a.calib_steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            calib_t = time.time()
        if step == 2 * a.calib_steps and not a.max_steps:
            per = (time.time() - calib_t) / a.calib_steps
            total = max(step + 1, int((a.time_budget - (calib_t - t0)) / (per * 1.04)) + a.calib_steps)
            # held-out evals cost time too: about 1 step each
            total -= total // a.eval_every
            print("[train] %.3f s/step -> total steps %d (%.1f M tokens)" % (per, total, total * a.batch * a.ctx / 1e6), flush=True)
            log["total_steps"] = total
            log["sec_per_step"] = per
        if step % a.log_every == 0 or step == total:
            el = time.time() - t0
            row = {"step": step, "tokens": tokens, "time_s": round(el, 1), "lr": lr_at(step - 1),
                   "loss": acc / acc_n, "grad_norm": float(gn),
                   "key_token_acc": ans_hit / ans_n if ans_n else None}
            log["steps"].append(row)
            print("[train] step %5d  loss %.4f  lr %.2e  gn %.2f  key-token acc %s  %.0f tok/s  %.0fs" % (
                step, row["loss"], row["lr"], row["grad_norm"],
                "%.2f" % row["key_token_acc"] if ans_n else "-", tokens / el, el), flush=True)
            acc, acc_n, ans_hit, ans_n = 0.0, 0, 0, 0
        if step % a.eval_every == 0 or step == total:
            model.eval()
            hl = heldout_loss(model, data, device, 16 if not a.smoke else 2, a.ctx, amp)
            pk = passkey_eval(model, data, device, sorted({min(128, a.ctx), a.ctx}), [0.0, 0.5, 1.0],
                              6 if not a.smoke else 1, 7, amp)
            log["evals"].append({"step": step, "heldout_loss": hl, "heldout_ppl": math.exp(hl), "passkey": pk})
            print("[train] eval step %d: held-out (Emma, Persuasion) loss %.4f ppl %.1f  passkey %s" % (
                step, hl, math.exp(hl), json.dumps(pk)), flush=True)
            if hl < best[0]:
                best = (hl, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
        if time.time() - t0 > a.time_budget * 1.08:
            print("[train] wall-clock budget reached at step %d" % step, flush=True)
            break
    train_s = time.time() - t0
    log["train_seconds"] = train_s
    log["final_step"] = step
    log["tokens_seen"] = tokens
    print("[train] trained %d steps, %.1f M tokens in %.0f s; best held-out loss %.4f at step %d" % (
        step, tokens / 1e6, train_s, best[0], best[2]), flush=True)
    if a.keep == "best" and best[1] is not None and best[2] != step:
        model.load_state_dict(best[1])
        print("[train] keeping the best held-out checkpoint (step %d), not the last" % best[2], flush=True)
    log["kept_step"] = best[2] if a.keep == "best" else step
    log["kept_heldout_loss"] = best[0] if a.keep == "best" else log["evals"][-1]["heldout_loss"]

    # 4. Save (F16), reload the F16 weights, check HF, sample, passkey grid.
    save_model_dir(model, cfg, a.out, os.path.join(a.data, "tokenizer.model"))
    try:
        r = check_against_hf(a.out, cfg, device, probe)
    except Exception as e:  # noqa: BLE001
        r = {"ok": False, "error": repr(e)}
    print("[train] HF check (trained, F16 weights in fp32): %s" % json.dumps(r), flush=True)
    log["checks"]["hf_final"] = r
    m16 = load_f16_as_f32(cfg, a.out, device)
    for mm in m16.backbone.layers:
        mm.mixer.chunk = a.chunk
    log["final_heldout_loss_f16_fp32"] = heldout_loss(m16, data, device, 16 if not a.smoke else 2, a.ctx, False)
    print("[train] held-out loss of the saved F16 weights (fp32 compute): %.4f" % log["final_heldout_loss_f16_fp32"], flush=True)
    prompts = ["It is a truth universally acknowledged, that",
               "In the beginning",
               "The hacker",
               "Mr. Darcy said",
               "PASSKEY"]
    samples = []
    for p in prompts:
        if p == "PASSKEY":
            pr = random.Random(99)
            ids, key_ids = data.passkey_ids(min(400, a.ctx), 0.5, 48213, pr)
            p = sp.decode(ids)
        pid, new = greedy(m16, sp, p, 60, device)
        samples.append({"prompt": p, "prompt_ids": pid, "greedy_ids": new, "text": sp.decode(new)})
        print("[sample] %r -> %r" % (p[-80:], sp.decode(new)), flush=True)
    with open(os.path.join(a.out, "samples.json"), "w") as f:
        json.dump(samples, f, indent=1)
    if not a.smoke:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        lengths = [c for c in (256, 512, 1024, 2048, 4096, 8192) if c <= 16 * a.ctx]
        t1 = time.time()
        grid = passkey_eval(m16, data, device, lengths, [0.0, 0.25, 0.5, 0.75, 1.0], 4, 2024, False)
        log["passkey_grid_plain"] = grid
        print("[train] passkey grid (plain Mamba, fp32, teacher-forced greedy, 4 keys a cell, %.0fs): %s" % (
            time.time() - t1, json.dumps(grid)), flush=True)
    log["samples"] = samples
    log["total_seconds"] = time.time() - t_start
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print("[train] wrote %s in %.0f s" % (a.out, time.time() - t_start), flush=True)


if __name__ == "__main__":
    main()
