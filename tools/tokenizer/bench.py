#!/usr/bin/env python3
"""Tokenization throughput, decimamba vs Hugging Face `tokenizers`, one thread, same texts.

  python3 tools/tokenizer/bench.py BUILD/bench_tokenizer TOKENIZER_JSON [TEXT_FILE ...]

Texts: the given files (split into paragraphs), else the seeded test corpus (40,000 texts).
`tokenizers` runs with RAYON_NUM_THREADS=1 and encode() per text (no batch parallelism);
decimamba's bench_tokenizer is single-threaded. Both encode user text (special tokens as text).
Both report the best of 5 passes; the first pass (cold BPE cache) is shown too.
"""
import os
import struct
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402
from property_test import write_texts  # noqa: E402


def main():
    bench, tok_path = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        tin = os.path.join(tmp, "texts.bin")
        if len(sys.argv) > 3:
            texts = []
            for f in sys.argv[3:]:
                with open(f, "rb") as fh:
                    texts += [p for p in fh.read().split(b"\n\n") if p]
            write_texts(tin, texts)
        else:
            subprocess.check_call([bench, "corpus", "40000", "99", tin])
            texts = oracle.read_texts(tin)
        strs = [t.decode("utf-8", "replace") for t in texts]
        nbytes = sum(len(t) for t in texts)
        tok = oracle.load(tok_path, parse_special=False)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for s in strs:
                tok.encode(s, add_special_tokens=False)
            times.append(time.perf_counter() - t0)
        import tokenizers
        print("tokenizers %s (Python, 1 thread)  %d texts, %.2f MB  first pass %.1f MB/s  "
              "best of 5 %.1f MB/s" % (tokenizers.__version__, len(texts), nbytes / 1e6,
                                       nbytes / 1e6 / times[0], nbytes / 1e6 / min(times)))
        sys.stdout.flush()
        subprocess.check_call([bench, "bench", tok_path, tin, "5"])


if __name__ == "__main__":
    main()
