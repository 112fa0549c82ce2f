#!/usr/bin/env python3
"""decimamba vs the independent PyTorch DeciMamba reference (decimamba_ref.py) on a real model at
long prompts: the same kept indices at every decimating layer and the same greedy answer.

    python3 tools/reference/compare_long.py --decimamba .gpu/decimamba --model models/default \
        --backends cpu,cuda --lengths 8192,32768 --out OUT/compare_long.json

For each length it writes a passkey prompt (the DeciMamba template, filler sentences made from
fixed word lists with a seeded RNG, no digits but the key), runs `decimamba generate --temperature 0
--trace-json` on each backend with the model's default decimation (config.json "decimamba" block)
and the reference's prefill + greedy decode in fp32 on the CPU, and compares. Needs torch,
transformers (to read the weights) and sentencepiece (to size the prompt): the GPU host has them.
Exit status 0 when everything agrees.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SUBJ = ["The old miller", "A tired traveller", "The young clerk", "Her elder sister", "The parish priest",
        "A quiet farmer", "The captain", "His cousin", "The gardener", "A stranger from the north"]
VERB = ["walked slowly towards", "spoke at length about", "looked for a while at", "thought again of",
        "wrote a letter about", "was often seen near", "had long admired", "never understood"]
OBJ = ["the grey church on the hill", "the narrow bridge over the river", "the orchard behind the house",
       "the letters left on the table", "the long road to the market town", "the garden in the rain",
       "the library of the great house", "the boats moored in the harbour"]
TAIL = ["before the evening came.", "as the light was fading.", "without saying a word.",
        "while the others were away.", "in the early spring.", "for reasons nobody knew."]

PREFIX = ("There is an important pass key hidden inside a lot of irrelevant text. "
          "Find it and memorize it:\n")
NEEDLE = "The pass key is {k}. Remember it. {k} is the pass key. "
SUFFIX = "\nAnswer: "


def prompt_text(sp, n_tokens, depth, key, seed):
    rng = random.Random(seed)
    sents = []
    while len(sp.encode(PREFIX + " ".join(sents) + NEEDLE.format(k=key) + SUFFIX)) < n_tokens:
        sents += [" ".join([rng.choice(SUBJ), rng.choice(VERB), rng.choice(OBJ), rng.choice(TAIL)])
                  for _ in range(max(1, (n_tokens - 40) // 200))]
    while True:
        at = int(round(depth * len(sents)))
        text = PREFIX + "".join(s + " " for s in sents[:at]) + NEEDLE.format(k=key) + " ".join(sents[at:]) + SUFFIX
        if len(sp.encode(text)) <= n_tokens or not sents:
            return text
        sents.pop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decimamba", required=True)
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--backends", default="cpu")
    ap.add_argument("--lengths", default="8192,32768")
    ap.add_argument("--depths", default="0.3,0.7")
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch
    import sentencepiece as spm
    from transformers import MambaForCausalLM
    import decimamba_ref as ref

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    d = cfg["decimamba"]["decimation"]
    deci = ref.DeciConfig(layers=list(d["layers"]), L_base=float(d["L_base"]), beta=float(d.get("beta", 1.0)),
                          min_seq_len=int(d.get("min_seq_len", 20)), protect_tail=1)
    hf = MambaForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    W = ref.weights_from_hf(hf)
    del hf
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model, "tokenizer.model"))

    report, ok_all = [], True
    lengths = [int(x) for x in a.lengths.split(",")]
    depths = [float(x) for x in a.depths.split(",")]
    with tempfile.TemporaryDirectory() as td:
        for i, (L, depth) in enumerate(zip(lengths, depths * len(lengths))):
            key = str(random.Random(1000 + i).randint(10000, 99999))
            text = prompt_text(sp, L, depth, key, seed=i)
            pf = os.path.join(td, "prompt_%d.txt" % i)
            with open(pf, "w") as f:
                f.write(text)
            runs = {}
            for be in a.backends.split(","):
                tj = os.path.join(td, "trace_%d_%s.json" % (i, be))
                r = subprocess.run([a.decimamba, "generate", "--model", a.model, "--backend", be, "--temperature", "0",
                                    "-n", str(a.new_tokens), "--quiet", "--prompt-file", pf, "--trace-json", tj],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit("compare_long: decimamba %s failed: %s" % (be, r.stderr.strip()))
                runs[be] = json.load(open(tj))
            ids = runs[a.backends.split(",")[0]]["prompt_ids"]
            tokens, _, res = ref.greedy(W, torch.tensor(ids), a.new_tokens, deci)
            ref_kept = {int(l): v for l, v in res.kept.items()}
            entry = {"length": L, "prompt_tokens": len(ids), "depth": depth, "key": key,
                     "reference": {"generated_ids": tokens, "text": sp.decode(tokens),
                                   "kept_counts": {str(l): len(v) for l, v in ref_kept.items()},
                                   "boundary_gap": {str(l): g for l, g in res.gaps.items()}},
                     "backends": {}}
            for be, run in runs.items():
                same_prompt = run["prompt_ids"] == ids
                kept = {int(x["layer"]): x["kept"] for x in run["decimating_layers"]}
                same_kept = kept == ref_kept
                diff = {str(l): len(set(kept.get(l, [])) ^ set(v)) for l, v in ref_kept.items()}
                g = run["generated_ids"]  # decimamba stops at EOS; the reference runs on
                same_answer = tokens[:len(g)] == g and (len(g) == len(tokens) or tokens[len(g)] == sp.eos_id())
                ok = same_prompt and same_kept and same_answer
                ok_all &= ok
                entry["backends"][be] = {"same_prompt_ids": same_prompt, "same_kept": same_kept,
                                         "kept_symmetric_difference": diff, "same_greedy_ids": same_answer,
                                         "text": run["text"], "ok": ok}
                print("L=%d (%d tokens) depth %.2f key %s | %s: kept %s, answer %s (%r vs reference %r)" % (
                    L, len(ids), depth, key, be, "same" if same_kept else "DIFFERENT %s" % diff,
                    "same" if same_answer else "DIFFERENT", run["text"], sp.decode(tokens)), flush=True)
            report.append(entry)
    with open(a.out, "w") as f:
        json.dump({"model": a.model, "decimation": d, "runs": report, "ok": ok_all}, f, indent=1)
    print("compare_long: %s" % ("all agree" if ok_all else "DISAGREEMENT"))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
