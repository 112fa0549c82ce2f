#!/usr/bin/env python3
"""Re-checks the fixtures in tests/data/models/ with a third, numpy-only implementation (float64).

Needs only python3 + numpy (no torch, no safetensors package: the files are parsed by hand), so it
runs on the build machine. For every model directory it reads config.json (Hugging Face or mamba_ssm
dialect) and model.safetensors (F32, F16 or BF16), recomputes from reference.safetensors' prompts:
logits, hidden.i, conv/ssm states (full and short prompt), the greedy continuation through a
recurrent step, and the DeciMamba outputs (kept indices, scores, logits, greedy tokens, states),
and compares. Exit status 0 when everything agrees.

    python3 tools/reference/check_fixtures.py [tests/data/models]
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys

import numpy as np

TOL = 1e-5  # relative (Frobenius) error between float64 here and the fp32 fixtures


def read_safetensors(path: str):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        raw = data[base + a : base + b]
        dt, shape = info["dtype"], info["shape"]
        if dt == "F32":
            arr = np.frombuffer(raw, "<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, "<f2")
        elif dt == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "I32":
            arr = np.frombuffer(raw, "<i4")
        else:
            raise ValueError(f"{path}: unsupported dtype {dt} for {name}")
        out[name] = arr.reshape(shape)
    return out, meta


def load_model(d: str):
    cfg = json.load(open(os.path.join(d, "config.json")))
    t, _ = read_safetensors(os.path.join(d, "model.safetensors"))
    if "d_model" in cfg:  # mamba_ssm dialect
        ssm = cfg.get("ssm_cfg", {})
        c = dict(
            d_model=cfg["d_model"],
            n_layer=cfg["n_layer"],
            d_state=ssm.get("d_state", 16),
            d_conv=ssm.get("d_conv", 4),
            expand=ssm.get("expand", 2),
            eps=1e-5,
        )
        emb_key = "backbone.embedding.weight"
        tied = cfg.get("tie_embeddings", True)
    else:
        c = dict(
            d_model=cfg["hidden_size"],
            n_layer=cfg["num_hidden_layers"],
            d_state=cfg["state_size"],
            d_conv=cfg["conv_kernel"],
            expand=cfg["expand"],
            eps=cfg["layer_norm_epsilon"],
        )
        emb_key = "backbone.embeddings.weight"
        tied = cfg.get("tie_word_embeddings", True)
    f = lambda k: None if k not in t else t[k].astype(np.float64)  # noqa: E731
    W = dict(cfg=c, emb=f(emb_key), norm_f=f("backbone.norm_f.weight"), layers=[])
    W["lm_head"] = W["emb"] if tied else f("lm_head.weight")
    assert ("lm_head.weight" in t) == (not tied), "lm_head presence contradicts the tie flag"
    for i in range(c["n_layer"]):
        p = f"backbone.layers.{i}."
        W["layers"].append(
            dict(
                norm=f(p + "norm.weight"),
                in_w=f(p + "mixer.in_proj.weight"),
                in_b=f(p + "mixer.in_proj.bias"),
                conv_w=f(p + "mixer.conv1d.weight")[:, 0, :],
                conv_b=f(p + "mixer.conv1d.bias"),
                x_w=f(p + "mixer.x_proj.weight"),
                dt_w=f(p + "mixer.dt_proj.weight"),
                dt_b=f(p + "mixer.dt_proj.bias"),
                A=-np.exp(f(p + "mixer.A_log")),
                D=f(p + "mixer.D"),
                out_w=f(p + "mixer.out_proj.weight"),
                out_b=f(p + "mixer.out_proj.bias"),
            )
        )
    return W


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def silu(x):
    return x / (1 + np.exp(-x))


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def lin(x, w, b):
    y = x @ w.T
    return y if b is None else y + b


def prefill(W, ids, deci=None):
    c = W["cfg"]
    K_ = c["d_conv"]
    resid = W["emb"][ids]
    out = dict(hidden=[], conv=[], ssm=[], kept={}, scores={})
    pos = np.arange(len(ids))
    for l, p in enumerate(W["layers"]):
        L = resid.shape[0]
        Di = p["D"].shape[0]
        N = p["A"].shape[1]
        R = p["dt_w"].shape[1]
        xz = lin(rms(resid, p["norm"], c["eps"]), p["in_w"], p["in_b"])
        x, z = xz[:, :Di], xz[:, Di:]
        tail = np.concatenate([np.zeros((max(0, K_ - L), Di)), x[-K_:]])
        out["conv"].append(tail.T)
        xp = np.concatenate([np.zeros((K_ - 1, Di)), x])
        xc = sum(xp[k : k + L] * p["conv_w"][:, k] for k in range(K_))
        if p["conv_b"] is not None:
            xc = xc + p["conv_b"]
        xc = silu(xc)
        xd = xc @ p["x_w"].T
        dt, B, C = xd[:, :R] @ p["dt_w"].T, xd[:, R : R + N], xd[:, R + N :]
        if deci and l in deci["layers"]:
            s = deci["layers"].index(l)
            Lc = L - deci["protect_tail"]
            if Lc > 0:
                score = np.sqrt((softplus(dt[:Lc] + p["dt_b"]) ** 2).sum(-1))
                Kk = min(int(max(min(Lc, deci["L_base"] * deci["beta"] ** s), deci["min_seq_len"])), Lc)
                order = sorted(range(Lc), key=lambda i: (-score[i], i))
                idx = sorted(order[:Kk]) + list(range(Lc, L))
                out["kept"][l], out["scores"][l] = idx, score
                xc, dt, B, C, z, resid, pos = xc[idx], dt[idx], B[idx], C[idx], z[idx], resid[idx], pos[idx]
        delta = softplus(dt + p["dt_b"])
        h = np.zeros((Di, N))
        ys = []
        for t in range(xc.shape[0]):
            h = np.exp(delta[t][:, None] * p["A"]) * h + (delta[t][:, None] * B[t][None, :]) * xc[t][:, None]
            ys.append(h @ C[t] + p["D"] * xc[t])
        resid = resid + lin(np.array(ys) * silu(z), p["out_w"], p["out_b"])
        out["hidden"].append(resid)
        out["ssm"].append(h)
    out["logits"] = rms(resid, W["norm_f"], c["eps"]) @ W["lm_head"].T
    out["pos"] = pos
    return out


def step(W, conv, ssm, tok):
    c = W["cfg"]
    resid = W["emb"][tok]
    for l, p in enumerate(W["layers"]):
        Di, N, R = p["D"].shape[0], p["A"].shape[1], p["dt_w"].shape[1]
        xz = lin(rms(resid, p["norm"], c["eps"]), p["in_w"], p["in_b"])
        x, z = xz[:Di], xz[Di:]
        conv[l] = np.concatenate([conv[l][:, 1:], x[:, None]], axis=1)
        xc = (conv[l] * p["conv_w"]).sum(-1) + (0 if p["conv_b"] is None else p["conv_b"])
        xc = silu(xc)
        xd = p["x_w"] @ xc
        delta = softplus(p["dt_w"] @ xd[:R] + p["dt_b"])
        ssm[l] = np.exp(delta[:, None] * p["A"]) * ssm[l] + (delta[:, None] * xd[R : R + N][None, :]) * xc[:, None]
        resid = resid + lin((ssm[l] @ xd[R + N :] + p["D"] * xc) * silu(z), p["out_w"], p["out_b"])
    return rms(resid, W["norm_f"], c["eps"]) @ W["lm_head"].T


def greedy(W, ids, n, deci=None):
    r = prefill(W, ids, deci)
    conv, ssm = [a.copy() for a in r["conv"]], [a.copy() for a in r["ssm"]]
    row, toks, rows = r["logits"][-1], [], []
    for k in range(n):
        rows.append(row)
        toks.append(int(np.flatnonzero(row == row.max())[0]))
        if k + 1 < n:
            row = step(W, conv, ssm, toks[-1])
    return toks, np.array(rows), r


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_model(d: str) -> list[str]:
    bad = []

    def ok(name, cond, detail=""):
        if not cond:
            bad.append(f"{os.path.basename(d)}: {name} {detail}")

    def close(name, a, b):
        e = rel(a, b)
        ok(name, np.asarray(a).shape == np.asarray(b).shape and e <= TOL, f"rel err {e:.2e}")
        return e

    W = load_model(d)
    R, meta = read_safetensors(os.path.join(d, "reference.safetensors"))
    n_layer = W["cfg"]["n_layer"]
    ids = R["prompt_ids"].astype(np.int64)
    r = prefill(W, ids)
    worst = close("logits", r["logits"], R["logits"])
    for i in range(n_layer):
        close(f"hidden.{i}", r["hidden"][i], R[f"hidden.{i}"])
        close(f"conv_state.{i}", r["conv"][i], R[f"conv_state.{i}"])
        close(f"ssm_state.{i}", r["ssm"][i], R[f"ssm_state.{i}"])
    toks, rows, _ = greedy(W, ids, len(R["greedy_ids"]))
    ok("greedy_ids", toks == R["greedy_ids"].tolist(), f"{toks} vs {R['greedy_ids'].tolist()}")
    close("greedy_logits", rows, R["greedy_logits"])
    rs = prefill(W, R["short.prompt_ids"].astype(np.int64))
    close("short.logits", rs["logits"], R["short.logits"])
    for i in range(n_layer):
        close(f"short.conv_state.{i}", rs["conv"][i], R[f"short.conv_state.{i}"])
        close(f"short.ssm_state.{i}", rs["ssm"][i], R[f"short.ssm_state.{i}"])

    deci = dict(
        layers=[int(x) for x in meta["deci.layers"].split(",")],
        L_base=float(meta["deci.L_base"]),
        beta=float(meta["deci.beta"]),
        min_seq_len=int(meta["deci.min_seq_len"]),
        protect_tail=int(meta["deci.protect_tail"]),
    )
    dids = R["deci.prompt_ids"].astype(np.int64)
    dtoks, drows, dr = greedy(W, dids, len(R["deci.greedy_ids"]), deci)
    for l in deci["layers"]:
        k = R[f"deci.kept.{l}"].tolist()
        ok(f"deci.kept.{l}", dr["kept"][l] == k, "differs")
        ok(f"deci.kept.{l} drops tokens", len(k) < len(dr["scores"][l]) + deci["protect_tail"])
        close(f"deci.score.{l}", dr["scores"][l], R[f"deci.score.{l}"])
    close("deci.logits", dr["logits"][-1:], R["deci.logits"])
    ok("deci.greedy_ids", dtoks == R["deci.greedy_ids"].tolist(), f"{dtoks} vs {R['deci.greedy_ids'].tolist()}")
    close("deci.greedy_logits", drows, R["deci.greedy_logits"])
    ok("deci.final_pos", dr["pos"].tolist() == R["deci.final_pos"].tolist())
    for i in range(n_layer):
        close(f"deci.conv_state.{i}", dr["conv"][i], R[f"deci.conv_state.{i}"])
        close(f"deci.ssm_state.{i}", dr["ssm"][i], R[f"deci.ssm_state.{i}"])
    nd = prefill(W, dids, dict(deci, L_base=1e9))
    close("deci_nodrop.logits", nd["logits"][-1:], R["deci_nodrop.logits"])
    ok("tokenizer.model present", os.path.exists(os.path.join(d, "tokenizer.model")))
    print(f"{os.path.basename(d):15s} {'OK ' if not bad else 'BAD'} logits rel err {worst:.1e}; greedy {toks[:6]}...; "
          f"deci K {meta['deci.K']} kept {[len(dr['kept'][l]) for l in deci['layers']]}")
    return bad


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../tests/data/models")
    bad = []
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if os.path.isfile(os.path.join(d, "reference.safetensors")):
            bad += check_model(d)
    for b in bad:
        print("MISMATCH", b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
