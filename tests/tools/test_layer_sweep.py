#!/usr/bin/env python3
"""ctest: tools/eval/layer_sweep.py on a fixture model through the real CLI (stdlib only).

    test_layer_sweep.py DECIMAMBA SOURCE_DIR WORK_DIR

Checks that the sweep runs every candidate plus the plain baseline, reads the passkey JSON it
relies on (cells, samples, needle_kept), picks its best among the candidates, and fails with a
message on a bad layer list.
"""
import json
import os
import subprocess
import sys


def main():
    dm, src, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "sweep.json")
    tool = os.path.join(src, "tools", "eval", "layer_sweep.py")
    model = os.path.join(src, "tests", "data", "models", "tiny-tied")
    base = [sys.executable, tool, "--decimamba", dm, "--model", model, "--backend", "cpu",
            "--lengths", "160,240", "--depths", "0,1", "--keys", "1"]
    r = subprocess.run(base + ["--layers", "1-2", "--L-base", "40,60", "--out", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    j = json.load(open(out))
    runs = j["runs"]
    assert [(x["layer"], x["L_base"]) for x in runs] == [(None, None), (1, 40), (2, 40), (1, 60), (2, 60)], runs
    for x in runs:
        assert x["n"] == 4, x                     # 2 depths x 2 lengths x 1 key
        assert 0 <= x["success"] <= 1, x
        assert set(x["success_by_length"]) == {"160", "240"}, x
        if x["layer"] is None:
            assert x["needle_token_frac"] is None, x
        else:                                     # 40 or 60 of ~160-240 tokens: decimated
            assert 0 <= x["needle_token_frac"] <= 1, x
    assert (j["best"]["layer"], j["best"]["L_base"]) in [(x["layer"], x["L_base"]) for x in runs[1:]], j["best"]
    assert "best: layer" in r.stdout, r.stdout
    bad = subprocess.run(base + ["--layers", "9"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--layers must be within 0-3" in bad.stderr, (bad.returncode, bad.stderr)
    print("layer_sweep: ok")


if __name__ == "__main__":
    main()
