#!/usr/bin/env python3
"""Passkey curriculum fine-tune of a small Mamba-1 model (run 4; see docs/training.md).

    PYTHONUNBUFFERED=1 python3 tools/train/passkey_curriculum.py --data .corpus/tok \
        --init-from models/default --out OUT/model [--train-seconds 290] [--deadline 420]

Why runs 2 and 3 never retrieved the key: the answer is six tokens ('▁' and five single digits)
after 'Answer:', one example per 512-token row in 30-50% of the rows, so the key tokens were about
1-5% of the gradient even at weight 5-10, the examples were long from the start (64-512 tokens),
and the language-modelling loss dominated. The model never saw enough short, clean copy problems
to form the write-key/hold/read-key mechanism.

This script changes that:
  * starts from a trained model (--init-from, the shipped default) so the language is kept;
  * packs several passkey examples (each: prompt, key, </s>) into every 513-token passkey row, so a
    step at short lengths holds hundreds of answers;
  * loss = mean CE over the key tokens + lam * weighted mean CE over the other tokens
    (corpus rows weight 1, passkey filler/template tokens --filler-weight);
  * curriculum over the example length: stages --stages (max tokens); a stage is passed when the
    teacher-forced exact-match rate (all key tokens argmax-correct) of the training examples over a
    window of steps reaches --advance;
  * phase 1: --lm-frac1 corpus rows, lam --lam1, constant lr --lr; phase 2 (once the last stage is
    reached, or at --phase2-at of the time): --lm-frac2 corpus rows, lam --lam2, cosine decay of
    the lr to --min-lr-frac of it, time based;
  * prints the greedy (teacher-forced argmax) passkey accuracy at 128/256/512 tokens over 20 keys
    at intervals, and at the end over 40 keys from the saved F16 weights in fp32, plus the held-out
    loss of the new and of the --init-from model, measured the same way on the same card;
  * writes the model directory (F16, HF names), train_log.json, and samples.json (60 greedy
    tokens per prompt from the F16 weights run in fp32 on the CPU: golden tokens for the tests).
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
                  "Mr. Darcy said",
                  "PASSKEY"]


class Packer:
    """Builds the rows of a batch. data is train_mamba.Data (passkey_ids, lm_window, eos)."""

    def __init__(self, data, n, min_example, rng):
        self.data, self.n, self.min_example, self.rng = data, n, min_example, rng

    def target_len(self, lmax):
        lo = self.min_example
        if self.rng.random() < 0.7:
            lo = max(lo, lmax // 2)
        return self.rng.randint(lo, max(lo, lmax))

    def passkey_row(self, lmax, filler_w, ex_base):
        """One row of n tokens packed with passkey examples (lengths up to lmax), the rest corpus.
        Returns ids (n,), answer mask (n,), other-token weight (n,), example id (n,), count."""
        n, rng = self.n, self.rng
        seq, ans, w, eid = [], [], [], []
        n_ex = 0
        while n - len(seq) >= self.min_example:
            room = n - len(seq)
            tgt = min(self.target_len(lmax), room)
            key = rng.randint(10000, 99999)
            ids, key_ids = self.data.passkey_ids(tgt - 1, rng.random(), key, rng)
            ex = ids + key_ids + [self.data.eos]
            if len(ex) > room:                      # the shortest template did not fit: stop
                break
            n_ex += 1
            seq += ex
            ans += [False] * len(ids) + [True] * len(key_ids) + [False]
            w += [filler_w] * len(ids) + [0.0] * len(key_ids) + [filler_w]
            eid += [0] * len(ids) + [ex_base + n_ex] * len(key_ids) + [0]
        if len(seq) < n:
            k = n - len(seq)
            seq += self.data.lm_window(k).tolist()
            ans += [False] * k
            w += [1.0] * k
            eid += [0] * k
        w[0] = 0.0  # the first token is never a target
        return (np.asarray(seq, dtype=np.int64), np.asarray(ans), np.asarray(w, dtype=np.float32),
                np.asarray(eid, dtype=np.int64), n_ex)

    def batch(self, b, lmax, lm_frac, filler_w):
        rows, masks, ws, eids = [], [], [], []
        n_ex = 0
        for _ in range(b):
            if self.rng.random() < lm_frac:
                r = self.data.lm_window(self.n)
                m, w, e = np.zeros(self.n, bool), np.ones(self.n, np.float32), np.zeros(self.n, np.int64)
            else:
                r, m, w, e, k = self.passkey_row(lmax, filler_w, n_ex)
                n_ex += k
            rows.append(r); masks.append(m); ws.append(w); eids.append(e)
        # inputs rows[:, :-1], targets rows[:, 1:]: masks/weights/ids are over targets
        c = np.ascontiguousarray
        return (c(np.stack(rows)), c(np.stack(masks)[:, 1:]), c(np.stack(ws)[:, 1:]),
                c(np.stack(eids)[:, 1:]), n_ex)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--init-from", default="models/default")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--stages", default="80,128,192,256,384,512")
    ap.add_argument("--advance", type=float, default=0.85, help="exact-match rate to pass a stage")
    ap.add_argument("--window", type=int, default=5, help="steps per curriculum check")
    ap.add_argument("--min-stage-steps", type=int, default=10)
    ap.add_argument("--lm-frac1", type=float, default=0.25)
    ap.add_argument("--lm-frac2", type=float, default=0.5)
    ap.add_argument("--lam1", type=float, default=0.3)
    ap.add_argument("--lam2", type=float, default=1.0)
    ap.add_argument("--filler-weight", type=float, default=0.1)
    ap.add_argument("--phase2-at", type=float, default=0.7, help="time fraction forcing phase 2")
    ap.add_argument("--train-seconds", type=float, default=290.0)
    ap.add_argument("--deadline", type=float, default=420.0, help="whole-script wall clock, s")
    ap.add_argument("--eval-every-s", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=4321)
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
    print("[pk] device %s, torch %s" % (dev_name, torch.__version__), flush=True)
    log = {"settings": vars(a).copy(), "device": dev_name, "torch": torch.__version__,
           "steps": [], "evals": [], "stages": [], "checks": {}}
    out_dir = a.out
    os.makedirs(out_dir, exist_ok=True)

    def write_log():
        log["total_seconds"] = time.time() - t_start
        with open(os.path.join(out_dir, "train_log.json"), "w") as f:
            json.dump(log, f, indent=1)

    worst, _ = tm.check_scan(device)
    print("[pk] scan check worst rel err %.2e" % worst, flush=True)
    log["checks"]["scan_worst_rel_err"] = worst
    assert worst < 1e-4

    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.data, "tokenizer.model"))
    cfg = json.load(open(os.path.join(a.init_from, "config.json")))
    tm.REDUCE_MODE = "bmm"
    chunk = 32
    model = tm.load_f16_as_f32(cfg, a.init_from, device).train()   # dropout 0 (MambaLM default)
    for m in model.backbone.layers:
        m.mixer.chunk = chunk

    ns = argparse.Namespace(data=a.data, ctx=a.ctx, source_weights=a.source_weights,
                            passkey_min=64, passkey_len="uniform")
    nrng = np.random.default_rng(a.seed)
    data = tm.Data(ns, sp, nrng)
    prng = random.Random(a.seed + 1)
    min_example = len(data.passkey_ids(0, 0.5, 12345, random.Random(0))[0]) + 6 + 1
    packer = Packer(data, a.ctx + 1, min_example, prng)
    stages = [int(s) for s in a.stages.split(",")]
    print("[pk] min example %d tokens; stages %s" % (min_example, stages), flush=True)

    def pk_eval(m, lengths, n_per_depth, seed, use_amp):
        return tm.passkey_eval(m, data, device, lengths, [0.0, 0.25, 0.5, 0.75, 1.0], n_per_depth, seed, use_amp)

    def summarise(g):
        return {L: round(sum(r.values()) / len(r), 3) for L, r in g.items()}

    # baseline (the init model) on this card, same measurements as the final ones
    model.eval()
    base_hl = tm.heldout_loss(model, data, device, 16, a.ctx, False)
    base_pk = pk_eval(model, [128, 256, 512], 4, 11, False)
    log["baseline"] = {"heldout_loss_fp32": base_hl, "passkey": base_pk}
    print("[pk] baseline (%s): held-out %.4f  passkey %s" % (a.init_from, base_hl, summarise(base_pk)), flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.endswith("A_log")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.endswith("A_log"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=amp)

    def to_dev(arr, dtype=None):
        t = torch.from_numpy(arr)
        if dtype is not None:
            t = t.to(dtype)
        return t.pin_memory().to(device, non_blocking=True) if amp else t

    si, phase, phase2_t, stage_steps = 0, 1, None, 0
    t0 = time.time()
    step, last_eval = 0, t0
    acc_ans, acc_oth, acc_n = 0.0, 0.0, 0
    hit_tok = torch.zeros((), device=device); n_tok = torch.zeros((), device=device)
    ex_ok = torch.zeros((), device=device); ex_n = 0

    def make_batch():
        lm_frac = a.lm_frac1 if phase == 1 else a.lm_frac2
        rows, m, w, e, k = packer.batch(a.batch, stages[si], lm_frac, a.filler_weight)
        x = to_dev(rows)
        return x[:, :-1], x[:, 1:], to_dev(m), to_dev(w), to_dev(e), k

    batch = make_batch()
    while True:
        el = time.time() - t0
        frac = el / a.train_seconds
        if frac >= 1.0 or time.time() - t_start > a.deadline - 100:
            break
        if phase == 1 and frac >= a.phase2_at:
            phase, phase2_t = 2, el
            print("[pk] phase 2 forced by time at step %d (stage %d)" % (step, stages[si]), flush=True)
        if step < a.warmup:
            lr = a.lr * (step + 1) / a.warmup
        elif phase == 1:
            lr = a.lr
        else:
            p = min(1.0, (el - phase2_t) / max(1.0, a.train_seconds - phase2_t))
            lr = a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))
        for g in opt.param_groups:
            g["lr"] = lr
        lam = a.lam1 if phase == 1 else a.lam2
        x, y, am, w, eid, k = batch
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        ce = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1),
                             reduction="none").view(y.shape)
        amf = am.float()
        ans_loss = (ce * amf).sum() / amf.sum().clamp_min(1.0)
        oth_loss = (ce * w).sum() / w.sum().clamp_min(1.0)
        loss = ans_loss + lam * oth_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            wrong = (logits.argmax(-1) != y) & am
            hit_tok += (am & ~wrong).sum()
            n_tok += am.sum()
            if k:
                wc = torch.zeros(k + 1, device=device).index_add_(0, eid.reshape(-1), wrong.reshape(-1).float())
                ex_ok += (wc[1:] == 0).sum()
                ex_n += k
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        cur_stage = stages[si]
        batch = make_batch()                                # prepared while the GPU works
        acc_ans += ans_loss.detach(); acc_oth += oth_loss.detach(); acc_n += 1
        step += 1
        stage_steps += 1
        if step % a.window == 0:
            em = float(ex_ok) / max(1, ex_n)
            row = {"step": step, "time_s": round(time.time() - t0, 1), "lr": lr, "phase": phase,
                   "stage": cur_stage, "ans_loss": float(acc_ans) / acc_n, "other_loss": float(acc_oth) / acc_n,
                   "key_token_acc": float(hit_tok) / max(1.0, float(n_tok)), "exact_match": em,
                   "examples": ex_n, "grad_norm": float(gn)}
            log["steps"].append(row)
            if step % (4 * a.window) == 0 or em >= a.advance:
                print("[pk] step %4d %5.0fs ph%d stage %3d lr %.1e  ans %.3f oth %.3f  tok-acc %.3f  exact %.3f (%d ex)  gn %.2f" % (
                    step, row["time_s"], phase, cur_stage, lr, row["ans_loss"], row["other_loss"],
                    row["key_token_acc"], em, ex_n, row["grad_norm"]), flush=True)
            if em >= a.advance and stage_steps >= a.min_stage_steps and si + 1 < len(stages):
                si += 1
                stage_steps = 0
                log["stages"].append({"step": step, "time_s": row["time_s"], "to": stages[si], "exact_match": em})
                print("[pk] >>> stage %d passed (exact %.3f) at step %d, %.0fs: now up to %d tokens" % (
                    cur_stage, em, step, row["time_s"], stages[si]), flush=True)
                if si == len(stages) - 1 and phase == 1:
                    phase, phase2_t = 2, time.time() - t0
                    print("[pk] phase 2 (last stage reached) at step %d" % step, flush=True)
            acc_ans, acc_oth, acc_n = 0.0, 0.0, 0
            hit_tok.zero_(); n_tok.zero_(); ex_ok.zero_(); ex_n = 0
        if time.time() - last_eval > a.eval_every_s:
            model.eval()
            hl = tm.heldout_loss(model, data, device, 16, a.ctx, amp)
            pk = pk_eval(model, [128, 256, 512], 4, 7, amp)
            log["evals"].append({"step": step, "time_s": round(time.time() - t0, 1), "heldout_loss": hl,
                                 "passkey": pk})
            print("[pk] eval step %d: held-out %.4f  passkey(20 keys) %s" % (step, hl, summarise(pk)), flush=True)
            last_eval = time.time()
            write_log()
    train_s = time.time() - t0
    log.update(train_seconds=train_s, final_step=step, final_stage=stages[si], final_phase=phase)
    print("[pk] trained %d steps in %.0f s; stage %d, phase %d" % (step, train_s, stages[si], phase), flush=True)

    # Save, then measure the saved F16 weights in fp32.
    tm.save_model_dir(model, cfg, out_dir, os.path.join(a.data, "tokenizer.model"))
    del opt
    m16 = tm.load_f16_as_f32(cfg, out_dir, device)
    for mm in m16.backbone.layers:
        mm.mixer.chunk = chunk
    hl = tm.heldout_loss(m16, data, device, 16, a.ctx, False)
    pk = pk_eval(m16, [128, 256, 512], 8, 2024, False)
    log["final"] = {"heldout_loss_fp32": hl, "passkey_40keys": pk, "passkey_summary": summarise(pk)}
    print("[pk] FINAL (F16 weights, fp32): held-out %.4f (baseline %.4f)  passkey(40 keys) %s" % (
        hl, base_hl, summarise(pk)), flush=True)
    write_log()

    # Golden samples: 60 greedy tokens per prompt, F16 weights in fp32 on the CPU.
    cpu = torch.device("cpu")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    mc = tm.load_f16_as_f32(cfg, out_dir, cpu)
    for mm in mc.backbone.layers:
        mm.mixer.chunk = chunk
    samples = []
    with torch.no_grad():
        for p in SAMPLE_PROMPTS:
            if p == "PASSKEY":
                ids, _ = data.passkey_ids(400, 0.5, 48213, random.Random(99))
                p = sp.decode(ids)
            ids = sp.encode(p)
            pid = list(ids)
            for _ in range(60):
                lo = mc(torch.tensor([ids]))
                ids.append(int(lo[0, -1].argmax()))
            new = ids[len(pid):]
            samples.append({"prompt": p, "prompt_ids": pid, "greedy_ids": new, "text": sp.decode(new)})
            print("[sample] %r -> %r" % (p[-60:], sp.decode(new)), flush=True)
    with open(os.path.join(out_dir, "samples.json"), "w") as f:
        json.dump(samples, f, indent=1)
    log["samples"] = samples
    write_log()

    if time.time() - t_start < a.deadline - 30:
        try:
            probe = sp.encode("It is a truth universally acknowledged, that a single man in possession")
            r = tm.check_against_hf(out_dir, cfg, device, probe)
        except Exception as e:  # noqa: BLE001
            r = {"ok": False, "error": repr(e)}
        log["checks"]["hf_final"] = r
        print("[pk] HF check: %s" % json.dumps(r), flush=True)
        write_log()
    if time.time() - t_start < a.deadline - 20:
        g = tm.passkey_eval(m16, data, device, [1024, 2048], [0.0, 0.5, 1.0], 4, 77, False)
        log["final"]["passkey_beyond_12keys"] = g
        print("[pk] beyond training length (12 keys): %s" % summarise(g), flush=True)
        write_log()
    print("[pk] done in %.0f s" % (time.time() - t_start), flush=True)


if __name__ == "__main__":
    main()
