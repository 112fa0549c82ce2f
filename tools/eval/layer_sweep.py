#!/usr/bin/env python3
"""Pick DeciMamba's decimating layer and L_base for a model: the paper's procedure (decimamba-spec.md
2.6), with passkey retrieval at long lengths as the score, run through decimamba's own CLI.

    python3 tools/eval/layer_sweep.py --decimamba build/decimamba --model models/default \
        --layers 0-7 --L-base 256,512 --lengths 2048,8192 --keys 2 --out docs/results/sweep.json

For every (layer, L_base) it runs `decimamba passkey` with that single decimating layer over the
depths x lengths grid, and records the retrieval rate and how many needle tokens survived the
decimation (the passkey JSON's needle_kept). The plain model (--no-deci) is run once as the
baseline. The best candidate is the highest mean retrieval, ties broken by the needle survival
rate, then by the later layer (fewer layers at full length is not the aim; a later layer keeps more
of the model's local processing intact). Prints a markdown table; writes all runs as JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def parse_layers(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def run_passkey(a, extra):
    with tempfile.TemporaryDirectory() as td:
        js = os.path.join(td, "pk.json")
        cmd = [a.decimamba, "passkey", "--model", a.model, "--backend", a.backend, "--quiet",
               "--lengths", a.lengths, "--depths", a.depths, "--keys", str(a.keys),
               "--seed", str(a.seed), "--json", js] + extra
        if a.filler:
            cmd += ["--filler", a.filler]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("layer_sweep: %s failed: %s" % (" ".join(cmd), r.stderr.strip().splitlines()[-1:]))
        return json.load(open(js))


def summarise(j):
    cells = j["cells"]
    n = sum(c["n"] for c in cells)
    ok = sum(c["found_as_word"] + c["found_as_substring_only"] for c in cells)
    kept = [s for s in j["samples"] if s.get("needle_kept", -1) >= 0]
    whole = sum(1 for s in kept if s["needle_kept"] == s["needle_tokens"])
    frac = (sum(s["needle_kept"] / max(1, s["needle_tokens"]) for s in kept) / len(kept)) if kept else None
    by_len = {}
    for c in cells:
        t = by_len.setdefault(str(c["length"]), [0, 0])
        t[0] += c["found_as_word"] + c["found_as_substring_only"]
        t[1] += c["n"]
    return {"success": ok / max(1, n), "n": n,
            "success_by_length": {k: v[0] / v[1] for k, v in by_len.items()},
            "needle_whole": (whole / len(kept)) if kept else None, "needle_token_frac": frac}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decimamba", default="build/decimamba")
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--layers", default=None, help="candidates, e.g. 0-7 (default: every layer)")
    ap.add_argument("--L-base", default="512", help="comma-separated L_base values")
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--depths", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--keys", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--filler", default=None, help="filler text file (default: built-in)")
    ap.add_argument("--out", default=None, help="JSON of every run")
    a = ap.parse_args()

    n_layer = json.load(open(os.path.join(a.model, "config.json")))["num_hidden_layers"]
    layers = parse_layers(a.layers) if a.layers else list(range(n_layer))
    if any(l < 0 or l >= n_layer for l in layers):
        sys.exit("layer_sweep: --layers must be within 0-%d" % (n_layer - 1))
    bases = [float(x) for x in a.L_base.split(",")]

    runs = []
    plain = summarise(run_passkey(a, ["--no-deci"]))
    runs.append({"layer": None, "L_base": None, **plain})
    print("| layer | L_base | retrieval | by length | needle kept whole | needle tokens kept |")
    print("|---|---|---|---|---|---|")

    def row(r):
        bl = " ".join("%s:%.2f" % (k, v) for k, v in r["success_by_length"].items())
        nw = "-" if r["needle_whole"] is None else "%.2f" % r["needle_whole"]
        nf = "-" if r["needle_token_frac"] is None else "%.2f" % r["needle_token_frac"]
        lay = "plain" if r["layer"] is None else str(r["layer"])
        lb = "-" if r["L_base"] is None else "%g" % r["L_base"]
        print("| %s | %s | %.2f | %s | %s | %s |" % (lay, lb, r["success"], bl, nw, nf), flush=True)

    row(runs[0])
    for lb in bases:
        for l in layers:
            s = summarise(run_passkey(a, ["--deci-layers", str(l), "--deci-L-base", "%g" % lb]))
            runs.append({"layer": l, "L_base": lb, **s})
            row(runs[-1])
    cands = [r for r in runs if r["layer"] is not None]
    best = max(cands, key=lambda r: (r["success"], r["needle_token_frac"] or 0, r["layer"]))
    print("\nbest: layer %d, L_base %g (retrieval %.2f; plain %.2f)" % (
        best["layer"], best["L_base"], best["success"], plain["success"]))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "backend": a.backend, "lengths": a.lengths, "depths": a.depths,
                       "keys": a.keys, "seed": a.seed, "filler": a.filler or "built-in", "runs": runs,
                       "best": {"layer": best["layer"], "L_base": best["L_base"]}}, f, indent=1)


if __name__ == "__main__":
    main()
