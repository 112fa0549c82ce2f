"""Independent PyTorch reference of Mamba-1 (S6) with DeciMamba token decimation.

Implements ../shared/docs/decimamba-spec.md sections 1-3 with plain tensor ops and an explicit
sequential scan. It reads the weights of a Hugging Face `MambaForCausalLM` (any dtype; everything
is upcast to fp32) but never calls the model's modules, so it is a second implementation that the
fixture script checks against transformers (decimation off) before trusting it with decimation on.

Conventions (batch size 1, no batch axis anywhere):
  x, z, xc, dt : (L, d_inner)      B, C : (L, d_state)      A : (d_inner, d_state)
  conv_state   : (d_inner, d_conv)  the last d_conv pre-conv inputs, oldest first, zero-padded on the left
  ssm_state    : (d_inner, d_state)

Decimation (spec 1.2-1.4, 2.1-2.4, 3.1-3.2):
  - at decimating layer l (ordinal s in `layers`), with input length L and protected tail r:
    Lc = L - r; if Lc <= 0 nothing is dropped;
    K = int(max(min(Lc, L_base * beta**s), min_seq_len)), then clamped to Lc;
    score_t = ||softplus(dt_t + dt_bias)||_2 over d_inner, fp32, for t < Lc;
    kept = the K highest scores (ties: the lower index wins), ascending, then the tail Lc..L-1;
  - in_proj, conv1d and x_proj/dt_proj run on all L tokens; conv_state is taken from that full
    pre-conv x, before the layer's own gather;
  - xc, dt (pre-bias), B, C, z and the block-input residual are gathered; the scan, out_proj and
    every later layer run on the kept tokens only;
  - decode steps never decimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# Weights


@dataclass
class LayerWeights:
    norm_w: torch.Tensor  # (d_model,)
    in_w: torch.Tensor  # (2*d_inner, d_model)
    in_b: torch.Tensor | None  # (2*d_inner,)
    conv_w: torch.Tensor  # (d_inner, d_conv); tap d_conv-1 multiplies the newest token
    conv_b: torch.Tensor | None  # (d_inner,)
    x_w: torch.Tensor  # (dt_rank + 2*d_state, d_inner)
    dt_w: torch.Tensor  # (d_inner, dt_rank)
    dt_b: torch.Tensor  # (d_inner,)
    A: torch.Tensor  # (d_inner, d_state) = -exp(A_log)
    D: torch.Tensor  # (d_inner,)
    out_w: torch.Tensor  # (d_model, d_inner)
    out_b: torch.Tensor | None  # (d_model,)


@dataclass
class Weights:
    emb: torch.Tensor  # (V, d_model)
    layers: list[LayerWeights]
    norm_f: torch.Tensor  # (d_model,)
    lm_head: torch.Tensor  # (V, d_model)
    eps: float
    d_inner: int
    d_state: int
    d_conv: int
    dt_rank: int


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(device="cpu", dtype=torch.float32).clone()


def weights_from_hf(model) -> Weights:
    """Copies the parameters of a transformers MambaForCausalLM, upcast to fp32."""
    cfg = model.config
    bb = model.backbone
    layers = []
    for blk in bb.layers:
        m = blk.mixer
        layers.append(
            LayerWeights(
                norm_w=_f32(blk.norm.weight),
                in_w=_f32(m.in_proj.weight),
                in_b=_f32(m.in_proj.bias),
                conv_w=_f32(m.conv1d.weight)[:, 0, :],
                conv_b=_f32(m.conv1d.bias),
                x_w=_f32(m.x_proj.weight),
                dt_w=_f32(m.dt_proj.weight),
                dt_b=_f32(m.dt_proj.bias),
                A=-torch.exp(_f32(m.A_log)),
                D=_f32(m.D),
                out_w=_f32(m.out_proj.weight),
                out_b=_f32(m.out_proj.bias),
            )
        )
    return Weights(
        emb=_f32(bb.embeddings.weight),
        layers=layers,
        norm_f=_f32(bb.norm_f.weight),
        lm_head=_f32(model.lm_head.weight),
        eps=float(cfg.layer_norm_epsilon),
        d_inner=int(cfg.intermediate_size),
        d_state=int(cfg.state_size),
        d_conv=int(cfg.conv_kernel),
        dt_rank=int(cfg.time_step_rank),
    )


# ----------------------------------------------------------------------------------------------
# Kernels, written out


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    y = x @ w.t()
    return y if b is None else y + b


def causal_conv_silu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """out[t, c] = SiLU(b[c] + sum_k w[c, k] * x[t - (K-1) + k, c]), x[<0] = 0."""
    L, D = x.shape
    K = w.shape[1]
    xp = torch.cat([x.new_zeros(K - 1, D), x], dim=0)  # (L+K-1, D)
    y = torch.zeros_like(x)
    for k in range(K):
        y = y + xp[k : k + L] * w[:, k]
    if b is not None:
        y = y + b
    return F.silu(y)


def conv_state_tail(x: torch.Tensor, d_conv: int) -> torch.Tensor:
    """(L, d_inner) pre-conv input -> (d_inner, d_conv): last d_conv rows, zero-padded on the left."""
    L, D = x.shape
    tail = x[max(0, L - d_conv) :]
    if tail.shape[0] < d_conv:
        tail = torch.cat([x.new_zeros(d_conv - tail.shape[0], D), tail], dim=0)
    return tail.t().contiguous()


def dt_importance(dt: torch.Tensor, dt_b: torch.Tensor) -> torch.Tensor:
    """Per-token L2 norm over channels of softplus(dt + dt_bias), fp32. dt: (L, d_inner) -> (L,)."""
    delta = F.softplus(dt.float() + dt_b.float())
    return torch.sqrt((delta * delta).sum(dim=-1))


def selective_scan(u, dt, dt_b, A, B, C, D, z, h0=None):
    """Sequential fp32 scan. Returns y (L, d_inner) and the last state (d_inner, d_state)."""
    L, Di = u.shape
    delta = F.softplus(dt + dt_b)  # (L, Di)
    h = u.new_zeros(Di, A.shape[1]) if h0 is None else h0.clone()
    ys = []
    for t in range(L):
        dA = torch.exp(delta[t][:, None] * A)  # (Di, N)
        dBu = (delta[t][:, None] * B[t][None, :]) * u[t][:, None]  # (Di, N)
        h = dA * h + dBu
        ys.append(h @ C[t] + D * u[t])
    y = torch.stack(ys, dim=0) * F.silu(z)
    return y, h


# ----------------------------------------------------------------------------------------------
# Decimation policy


@dataclass
class DeciConfig:
    layers: list[int]  # 0-based, ascending
    L_base: float
    beta: float
    min_seq_len: int = 20
    protect_tail: int = 1


def keep_count(L: int, s: int, cfg: DeciConfig) -> int:
    """Number of non-protected tokens kept at the s-th decimating layer for input length L."""
    Lc = L - cfg.protect_tail
    if Lc <= 0:
        return max(Lc, 0)
    K = int(max(min(Lc, cfg.L_base * cfg.beta**s), cfg.min_seq_len))
    return min(K, Lc)


def select_kept(score: torch.Tensor, K: int) -> list[int]:
    """Indices of the K highest scores, ties to the lower index, returned ascending.

    The tie rule is explicit: a stable order by (-score, index); torch.topk's order is not used.
    """
    vals = score.tolist()  # exact: fp32 -> python float
    order = sorted(range(len(vals)), key=lambda i: (-vals[i], i))
    return sorted(order[:K])


def boundary_gap(score: torch.Tensor, K: int) -> float:
    """Relative gap between the K-th and (K+1)-th highest score (inf if nothing is dropped)."""
    if K >= score.numel():
        return math.inf
    s = torch.sort(score.double(), descending=True).values
    return float((s[K - 1] - s[K]) / s[K - 1].abs().clamp_min(1e-30))


# ----------------------------------------------------------------------------------------------
# Model


@dataclass
class State:
    conv: list[torch.Tensor]  # per layer (d_inner, d_conv)
    ssm: list[torch.Tensor]  # per layer (d_inner, d_state)


@dataclass
class PrefillResult:
    logits: torch.Tensor  # (L_final, V) logits of the surviving positions
    hidden: list[torch.Tensor]  # per layer: residual stream leaving the block, (L_l', d_model)
    state: State
    pos: torch.Tensor  # (L_final,) original positions of the surviving tokens
    kept: dict[int, list[int]] = field(default_factory=dict)  # layer -> kept indices within its input
    scores: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (Lc,) scores
    K: dict[int, int] = field(default_factory=dict)
    L_in: dict[int, int] = field(default_factory=dict)  # layer -> input length
    gaps: dict[int, float] = field(default_factory=dict)  # layer -> relative score gap at the cut


def prefill(W: Weights, ids: torch.Tensor, deci: DeciConfig | None = None) -> PrefillResult:
    """Full-sequence forward from an empty state (with DeciMamba when `deci` is given)."""
    ids = ids.to(torch.long).cpu()
    Di, N, R = W.d_inner, W.d_state, W.dt_rank
    resid = W.emb[ids]  # (L, d_model) residual stream entering layer 0
    pos = torch.arange(ids.numel())
    res = PrefillResult(logits=None, hidden=[], state=State([], []), pos=None)
    for l, lw in enumerate(W.layers):
        L = resid.shape[0]
        res.L_in[l] = L
        h = rms_norm(resid, lw.norm_w, W.eps)  # (L, d_model)
        xz = linear(h, lw.in_w, lw.in_b)  # (L, 2*Di)
        x, z = xz[:, :Di], xz[:, Di:]  # (L, Di) each
        conv_state = conv_state_tail(x, W.d_conv)  # (Di, d_conv), before this layer's gather
        xc = causal_conv_silu(x, lw.conv_w, lw.conv_b)  # (L, Di)
        x_dbl = xc @ lw.x_w.t()  # (L, R+2N)
        dt_low, B, C = x_dbl[:, :R], x_dbl[:, R : R + N], x_dbl[:, R + N :]
        dt = dt_low @ lw.dt_w.t()  # (L, Di), no bias yet

        if deci is not None and l in deci.layers:
            s = deci.layers.index(l)
            r = deci.protect_tail
            Lc = L - r
            if Lc > 0:
                score = dt_importance(dt[:Lc], lw.dt_b)  # (Lc,)
                K = keep_count(L, s, deci)
                idx = select_kept(score, K) + list(range(Lc, L))
                res.kept[l] = idx
                res.scores[l] = score
                res.K[l] = K
                res.gaps[l] = boundary_gap(score, K)
                it = torch.tensor(idx, dtype=torch.long)
                xc, dt, B, C, z = xc[it], dt[it], B[it], C[it], z[it]  # (L', .)
                resid = resid[it]  # block-input residual, (L', d_model)
                pos = pos[it]

        y, ssm_state = selective_scan(xc, dt, lw.dt_b, lw.A, B, C, lw.D, z)  # (L', Di)
        resid = resid + linear(y, lw.out_w, lw.out_b)  # (L', d_model)
        res.hidden.append(resid)
        res.state.conv.append(conv_state)
        res.state.ssm.append(ssm_state)

    res.logits = rms_norm(resid, W.norm_f, W.eps) @ W.lm_head.t()  # (L', V)
    res.pos = pos
    return res


def step(W: Weights, state: State, token: int) -> torch.Tensor:
    """One decode step (never decimates). Updates `state` in place; returns logits (V,)."""
    Di, N, R = W.d_inner, W.d_state, W.dt_rank
    resid = W.emb[int(token)]  # (d_model,)
    for l, lw in enumerate(W.layers):
        h = rms_norm(resid, lw.norm_w, W.eps)
        xz = linear(h, lw.in_w, lw.in_b)  # (2*Di,)
        x, z = xz[:Di], xz[Di:]
        cs = torch.cat([state.conv[l][:, 1:], x[:, None]], dim=1)  # (Di, d_conv) window, newest last
        state.conv[l] = cs
        xc = (cs * lw.conv_w).sum(dim=-1)
        if lw.conv_b is not None:
            xc = xc + lw.conv_b
        xc = F.silu(xc)  # (Di,)
        x_dbl = lw.x_w @ xc
        dt_low, B, C = x_dbl[:R], x_dbl[R : R + N], x_dbl[R + N :]
        delta = F.softplus(lw.dt_w @ dt_low + lw.dt_b)  # (Di,)
        hs = torch.exp(delta[:, None] * lw.A) * state.ssm[l] + (delta[:, None] * B[None, :]) * xc[:, None]
        state.ssm[l] = hs
        y = (hs @ C + lw.D * xc) * F.silu(z)
        resid = resid + linear(y, lw.out_w, lw.out_b)
    return rms_norm(resid, W.norm_f, W.eps) @ W.lm_head.t()


def argmax_lowest(v: torch.Tensor) -> int:
    """Greedy choice: the highest logit, ties to the lowest id."""
    return int((v == v.max()).nonzero()[0, 0])


def greedy(W: Weights, ids: torch.Tensor, n: int, deci: DeciConfig | None = None):
    """Prefill (optionally decimated) then n-1 decode steps.

    Returns (tokens[n], logits[n, V], prefill result): logits[0] is the prefill's last row, logits[k]
    the logits after stepping tokens[k-1]; tokens[k] = argmax_lowest(logits[k]).
    """
    res = prefill(W, ids, deci)
    state = State([c.clone() for c in res.state.conv], [s.clone() for s in res.state.ssm])
    row = res.logits[-1]
    tokens, rows = [], []
    for k in range(n):
        rows.append(row)
        t = argmax_lowest(row)
        tokens.append(t)
        if k + 1 < n:
            row = step(W, state, t)
    return tokens, torch.stack(rows, dim=0), res
