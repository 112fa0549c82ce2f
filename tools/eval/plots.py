#!/usr/bin/env python3
"""Figures of issue 5 from the JSON that decimamba's own commands write (matplotlib, Agg).

    plots.py passkey PLAIN.json DECI.json OUT.png     # Figure 1: two success heatmaps
    plots.py ppl OUT.png RUN_DIR                     # perplexity vs window, from the
        ppl_<mode>_<book>_<W>.json files of tools/eval/run_issue5.sh
    plots.py mmd OUT.png PLAIN_DIR DECI_DIR          # Figure 5: MMD vs context length per layer,
        each DIR holding erf_<L>.json files written by `decimamba erf --json`
    plots.py timing OUT.png BENCH.json               # prefill time vs length (decimamba bench --json)
"""
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _len_label(n):
    return "%dK" % (n // 1024) if n >= 1024 and n % 1024 == 0 else str(n)


def passkey(plain_path, deci_path, out):
    runs = [json.load(open(plain_path)), json.load(open(deci_path))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    for ax, j, title in zip(axes, runs, ["Mamba (decimation off)", "DeciMamba"]):
        depths, lengths = j["depths"], j["lengths"]
        grid = np.zeros((len(depths), len(lengths)))
        for c in j["cells"]:
            grid[depths.index(c["depth"]), lengths.index(c["length"])] = c["success"]
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(lengths)), [_len_label(n) for n in lengths])
        ax.set_yticks(range(len(depths)), ["%g" % d for d in depths])
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("needle depth")
        sub = j["decimation"] if j["decimation"] != "off" else "decimation off"
        ax.set_title("%s\n%s, %d keys/cell" % (title, sub, j["keys_per_cell"]), fontsize=9)
        for (r, c), v in np.ndenumerate(grid):
            ax.text(c, r, "%.1f" % v, ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="retrieval success")
    fig.savefig(out, dpi=120)


def _finish_log_log(fig, ax, out, xlabel, ylabel, legend_size):
    """Log-2 x axis, log y axis, labels, legend, grid; writes the PNG."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.savefig(out, dpi=120)


def ppl(out, run_dir):
    """run_dir holds ppl_<mode>_<book>_<W>.json files (`decimamba perplexity --json`)."""
    series = {}
    for f in glob.glob(os.path.join(run_dir, "ppl_*.json")):
        j = json.load(open(f))
        mode = "DeciMamba" if j["decimation_enabled"] else "Mamba"
        book = os.path.basename(j["file"]).rsplit(".", 1)[0].split("__")[-1]
        series.setdefault((book, mode), []).append((j["window"], j["perplexity"]))
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for (book, mode), pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                linestyle="-" if mode == "DeciMamba" else "--", label="%s, %s" % (book, mode))
    _finish_log_log(fig, ax, out, "context length W (tokens); NLL of each window's last 100 tokens",
                    "perplexity", 8)


def _erf_series(d):
    by_len = {}
    for f in glob.glob(os.path.join(d, "erf_*.json")):
        j = json.load(open(f))
        by_len[j["n_tokens"]] = j
    return [by_len[k] for k in sorted(by_len)]


def mmd(out, plain_dir, deci_dir):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, constrained_layout=True)
    for ax, d, title in zip(axes, [plain_dir, deci_dir], ["Mamba", "DeciMamba"]):
        series = _erf_series(d)
        if not series:
            continue
        lens = [s["n_tokens"] for s in series]
        n_layer = len(series[0]["layers"])
        cmap = plt.get_cmap("viridis")
        for l in range(n_layer):
            ax.plot(lens, [s["layers"][l]["mmd_mean"] for s in series], marker=".",
                    color=cmap(l / max(1, n_layer - 1)), label="layer %d" % l)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_title("%s: %s" % (title, series[0]["decimation"]), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Mamba Mean Distance of the last token (tokens)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.savefig(out, dpi=120)


def timing(out, path):
    """path: `decimamba bench --json` output with pp tests, decimation off and on."""
    j = json.load(open(path))
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    series = {}
    for r in j["results"]:
        if r["kind"] != "pp":
            continue
        key = (r["backend"], "Mamba" if r["deci"] == "off" else "DeciMamba (%s)" % r["deci"])
        series.setdefault(key, []).append((r["n_tokens"], r["n_tokens"] / r["tokens_per_s"]["median"]))
    for (be, mode), pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], marker="o", label="%s, %s" % (be, mode))
    _finish_log_log(fig, ax, out, "prompt tokens", "prefill time, ms (median)", 7)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "passkey" and len(sys.argv) == 5:
        passkey(*sys.argv[2:5])
    elif cmd == "ppl" and len(sys.argv) == 4:
        ppl(sys.argv[2], sys.argv[3])
    elif cmd == "mmd" and len(sys.argv) == 5:
        mmd(*sys.argv[2:5])
    elif cmd == "timing" and len(sys.argv) == 4:
        timing(*sys.argv[2:4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
