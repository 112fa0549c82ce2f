#!/usr/bin/env python3
"""Fine-tune a small Mamba-1 model for passkey retrieval with DeciMamba decimation active (the
paper's recipe, decimamba-spec.md 4.1: "DeciMamba models are fine-tuned with decimation active"),
at lengths beyond the base model's training context, so that the layers after the decimating one
learn to read a decimated sequence.

    PYTHONUNBUFFERED=1 python3 tools/train/deci_finetune.py --data .corpus/tok \
        --init-from models/default --out OUT/model --layer 4 --L-base 512 [--aux 1.0]

Each step has two batches:
  * a passkey batch: one example a row (prompt of --min-len..--max-len tokens, log-uniform, then
    the key), decimation at --layer keeping --L-base tokens of the first L - r plus the protected
    tail r = key tokens + 1 (the authors' training resp_len, spec 2.2); loss = CE of the key tokens;
  * a language-modelling batch of --ctx tokens from the training split without decimation
    (at this length a layer with L_base >= ctx keeps everything), weight --lam, so the language
    is kept.
--aux > 0 adds a selection loss that the paper does not have: a hinge on log ||Δ|| at the needle's
tokens against the K-th largest score of the row (detached), so the layers up to the decimating
one learn to keep the needle. Off by default; the run log says which was used.

Writes the model directory (F16; config.json gets a "decimamba" block with the decimation the
model was tuned for, which the runtime uses as the model's default), train_log.json and
samples.json (60 greedy tokens per prompt, no decimation, F16 weights in fp32 on the CPU: the
golden tokens of the tests).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SAMPLE_PROMPTS = ["It is a truth universally acknowledged, that",
                  "In the beginning",
                  "The hacker",
                  "Mr. Darcy said"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--init-from", default="models/default")
    ap.add_argument("--layer", type=int, required=True, help="the decimating layer (0-based)")
    ap.add_argument("--L-base", type=int, default=512)
    ap.add_argument("--min-len", type=int, default=640)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--tokens-per-step", type=int, default=32768)
    ap.add_argument("--ctx", type=int, default=512, help="LM rows")
    ap.add_argument("--lm-batch", type=int, default=16)
    ap.add_argument("--lam", type=float, default=0.5)
    ap.add_argument("--aux", type=float, default=0.0)
    ap.add_argument("--repeat-frac", type=float, default=0.0,
                    help="share of training prompts whose filler cycles a pool of 10-40 corpus sentences "
                         "(long repetitive context; the evaluations use fresh sentences)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--train-seconds", type=float, default=200.0)
    ap.add_argument("--eval-lengths", default="512,2048,8192,16384,32768")
    ap.add_argument("--eval-keys", type=int, default=2, help="keys per (length, depth)")
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--samples-device", default="cpu",
                    help="where the golden greedy samples run in fp32 (cpu, or cuda with TF32 off)")
    ap.add_argument("--source-weights",
                    default="austen=0.14,kjv=0.12,web=0.12,jargon=0.08,devil=0.02,foldoc=0.14,gcide=0.38")
    a = ap.parse_args()
    t_start = time.time()

    import torch
    import torch.nn.functional as F
    import sentencepiece as spm
    import train_mamba as tm

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda"
    random.seed(a.seed); np.random.seed(a.seed); torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    dev_name = torch.cuda.get_device_name(0) if amp else "cpu"
    tag = "[deci L%d]" % a.layer
    print("%s device %s, torch %s, aux %.2f" % (tag, dev_name, torch.__version__, a.aux), flush=True)
    os.makedirs(a.out, exist_ok=True)
    log = {"settings": vars(a).copy(), "device": dev_name, "torch": torch.__version__,
           "steps": [], "evals": []}

    def write_log():
        log["total_seconds"] = time.time() - t_start
        with open(os.path.join(a.out, "train_log.json"), "w") as f:
            json.dump(log, f, indent=1)

    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.data, "tokenizer.model"))
    cfg = json.load(open(os.path.join(a.init_from, "config.json")))
    cfg.pop("decimamba", None)
    tm.REDUCE_MODE = "bmm"
    model = tm.load_f16_as_f32(cfg, a.init_from, device).train()
    ns = argparse.Namespace(data=a.data, ctx=a.ctx, source_weights=a.source_weights,
                            passkey_min=64, passkey_len="uniform")
    data = tm.Data(ns, sp, np.random.default_rng(a.seed))
    rng = random.Random(a.seed + 1)
    eos = sp.eos_id()

    def filler(n, r, repeat):
        """Filler sentences for an n-token prompt (about 4 bytes a token): fresh corpus sentences,
        or with repeat a pool of 10-40 of them cycled."""
        budget, sents, size = max(0, n - 48) * 4.0, [], 0
        pool = [data.fillers[r.randrange(len(data.fillers))] for _ in range(r.randint(10, 40))] if repeat else None
        while size < budget:
            s = pool[len(sents) % len(pool)] if repeat else data.fillers[r.randrange(len(data.fillers))]
            sents.append(s)
            size += len(s) + 1
        return sents

    def example(n, depth, key, r, repeat=False):
        """Prompt ids of at most n - len(key) tokens, key ids, needle token span [nb, ne)."""
        sents = filler(n, r, repeat)
        key_ids = sp.encode(str(key))
        while True:
            k = int(round(depth * len(sents)))
            pre = tm.PASSKEY_PREFIX + "".join(s + " " for s in sents[:k])
            ids = sp.encode(data.build_passkey(sents, depth, key))
            if len(ids) + len(key_ids) <= n or not sents:
                break
            for _ in range(min(max(1, (len(ids) + len(key_ids) - n) // 40), len(sents))):
                sents.pop(r.randrange(len(sents)))
        nb = max(0, len(sp.encode(pre)) - 1)
        ne = len(sp.encode(pre + tm.PASSKEY_NEEDLE.format(k=key)))
        return ids, key_ids, nb, ne

    def deci_cfg(r):
        return {"layers": [a.layer], "L_base": a.L_base, "beta": 1.0, "min_seq_len": 20, "r": r}

    def passkey_batch(n, b, r):
        rows, spans, keys = [], [], []
        for _ in range(b):
            key = r.randint(10000, 99999)
            ids, key_ids, nb, ne = example(n, r.random(), key, r, r.random() < a.repeat_frac)
            rows.append(ids + key_ids); spans.append((nb, ne)); keys.append(key_ids)
        kl = len(keys[0])
        assert all(len(k) == kl for k in keys), "key token counts differ"
        m = max(len(x) for x in rows)
        pads = [m - len(x) for x in rows]
        x = torch.tensor([[eos] * p + row for p, row in zip(pads, rows)], device=device)
        spans = [(nb + p, ne + p) for (nb, ne), p in zip(spans, pads)]
        return x, kl, spans

    @torch.no_grad()
    def evaluate(m, lengths, keys, seed, deci):
        r = random.Random(seed)
        out = {}
        for L in lengths:
            row = {}
            for d in [0.0, 0.25, 0.5, 0.75, 1.0]:
                ok = 0
                for _ in range(keys):
                    key = r.randint(10000, 99999)
                    ids, key_ids, _, _ = example(L, d, key, r)
                    x = torch.tensor([ids + key_ids], device=device)[:, :-1]
                    kl = len(key_ids)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                        lo = m(x, deci_cfg(kl + 1) if deci else None)
                    ok += int(lo[0, -kl:].argmax(-1).tolist() == key_ids)
                row[str(d)] = ok / keys
            out[str(L)] = row
        return out

    def summ(g):
        return {L: round(sum(v.values()) / len(v), 2) for L, v in g.items()}

    lengths = [int(x) for x in a.eval_lengths.split(",")]
    model.eval()
    base = {"plain": evaluate(model, lengths, a.eval_keys, 5, False),
            "deci": evaluate(model, lengths, a.eval_keys, 5, True),
            "heldout_loss": tm.heldout_loss(model, data, device, 16, a.ctx, False)}
    log["baseline"] = base
    print("%s baseline: plain %s deci %s held-out %.4f" % (tag, summ(base["plain"]), summ(base["deci"]),
                                                          base["heldout_loss"]), flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.endswith("A_log")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.endswith("A_log"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=amp)
    mixer = model.backbone.layers[a.layer].mixer
    t0 = time.time()
    step = 0
    acc = {"key": 0.0, "lm": 0.0, "aux": 0.0, "em": 0.0, "n": 0, "kept": 0.0}
    while time.time() - t0 < a.train_seconds:
        frac = (time.time() - t0) / a.train_seconds
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        n = int(round(math.exp(rng.uniform(math.log(a.min_len), math.log(a.max_len)))))
        b = max(1, a.tokens_per_step // n)
        x, kl, spans = passkey_batch(n, b, rng)
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            lo = model(x[:, :-1], deci_cfg(kl + 1))
        tgt = x[:, -kl:]
        lk = lo[:, -kl:].float()
        key_loss = F.cross_entropy(lk.reshape(-1, lk.shape[-1]), tgt.reshape(-1))
        loss = key_loss
        aux = torch.zeros((), device=device)
        kept = 1.0
        sc = mixer.last_scores
        if sc is not None:
            kth = sc.topk(a.L_base, dim=-1).values[:, -1:].detach()           # (b, 1)
            needle = torch.zeros_like(sc, dtype=torch.bool)
            for i, (nb, ne) in enumerate(spans):
                needle[i, nb:min(ne, sc.shape[1])] = True
            kept = float(((sc >= kth) & needle).sum() / needle.sum().clamp_min(1))
            if a.aux > 0:
                hinge = F.relu(torch.log(kth) + 0.1 - torch.log(sc.clamp_min(1e-12)))
                aux = (hinge * needle).sum() / needle.sum().clamp_min(1)
                loss = loss + a.aux * aux
        rows = torch.from_numpy(np.stack([data.lm_window(a.ctx + 1) for _ in range(a.lm_batch)])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            ll = model(rows[:, :-1])
        lm_loss = F.cross_entropy(ll.float().reshape(-1, ll.shape[-1]), rows[:, 1:].reshape(-1))
        loss = loss + a.lam * lm_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        with torch.no_grad():
            em = float((lk.argmax(-1) == tgt).all(-1).float().mean())
        acc["key"] += float(key_loss.detach()); acc["lm"] += float(lm_loss.detach())
        acc["aux"] += float(aux.detach())
        acc["em"] += em; acc["kept"] += kept; acc["n"] += 1
        step += 1
        if step % 20 == 0:
            k = acc.pop("n")
            row = {kk: v / k for kk, v in acc.items()}
            row.update(step=step, time_s=round(time.time() - t0, 1), lr=lr)
            log["steps"].append(row)
            print("%s step %4d %4.0fs lr %.1e key %.3f lm %.3f aux %.3f exact %.2f needle-kept %.2f" % (
                tag, step, row["time_s"], lr, row["key"], row["lm"], row["aux"], row["em"], row["kept"]), flush=True)
            acc = {"key": 0.0, "lm": 0.0, "aux": 0.0, "em": 0.0, "n": 0, "kept": 0.0}
    log["train_steps"] = step
    log["train_seconds"] = time.time() - t0

    extra = {"decimamba": {"decimation": {"layers": [a.layer], "L_base": a.L_base, "beta": 1.0,
                                          "min_seq_len": 20},
                           "note": "DeciMamba fine-tune (tools/train/deci_finetune.py)"}}
    tm.save_model_dir(model, cfg, a.out, os.path.join(a.data, "tokenizer.model"), extra)
    m16 = tm.load_f16_as_f32(cfg, a.out, device)
    fin = {"plain": evaluate(m16, lengths, a.eval_keys, 9, False),
           "deci": evaluate(m16, lengths, a.eval_keys, 9, True),
           "heldout_loss": tm.heldout_loss(m16, data, device, 16, a.ctx, False)}
    log["final"] = fin
    print("%s FINAL (F16): plain %s deci %s held-out %.4f (base %.4f)" % (
        tag, summ(fin["plain"]), summ(fin["deci"]), fin["heldout_loss"], base["heldout_loss"]), flush=True)
    write_log()

    torch.backends.cudnn.allow_tf32 = False
    sdev = torch.device(a.samples_device)
    mc = tm.load_f16_as_f32(cfg, a.out, sdev)
    samples = []
    with torch.no_grad():
        for p in SAMPLE_PROMPTS:
            ids = sp.encode(p)
            pid = list(ids)
            for _ in range(60):
                ids.append(int(mc(torch.tensor([ids], device=sdev))[0, -1].argmax()))
            new = ids[len(pid):]
            samples.append({"prompt": p, "prompt_ids": pid, "greedy_ids": new, "text": sp.decode(new)})
            print("[sample] %r -> %r" % (p, sp.decode(new)), flush=True)
    with open(os.path.join(a.out, "samples.json"), "w") as f:
        json.dump(samples, f, indent=1)
    log["samples"] = samples
    write_log()
    print("%s done in %.0f s" % (tag, time.time() - t_start), flush=True)


if __name__ == "__main__":
    main()
