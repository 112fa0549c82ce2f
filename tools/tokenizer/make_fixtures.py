#!/usr/bin/env python3
"""Writes the oracle fixtures of tests/test_hf_tokenizer.cpp: for each text of the seeded corpus
(tests/test_hf_tokenizer_corpus.h, dumped by bench_tokenizer), the FNV-1a-64 digest of the ids
that Hugging Face `tokenizers` gives, once as user text (special tokens are text) and once with
special tokens parsed. Texts are not stored: the test regenerates them from the seed.

  python3 tools/tokenizer/make_fixtures.py BUILD/bench_tokenizer TOKENIZER_JSON OUT.bin [N] [SEED]

File: b"DMTOKFX1", u32 count, u64 seed, 32-byte ASCII tokenizers version (NUL padded), then per
text two u64 digests (user text, parse special). Little-endian.
"""
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402
from property_test import read_ids  # noqa: E402


def digest(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in struct.pack("<I", i):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    bench, tok, out = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 12000
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 20251127
    import tokenizers
    with tempfile.TemporaryDirectory() as tmp:
        texts = os.path.join(tmp, "texts.bin")
        subprocess.check_call([bench, "corpus", str(n), str(seed), texts])
        runs = []
        for flag in ([], ["--parse-special"]):
            ids = os.path.join(tmp, "ids.bin")
            oracle.main(["oracle", "encode", tok, texts, ids] + flag)
            runs.append(read_ids(ids))
    with open(out, "wb") as f:
        f.write(b"DMTOKFX1" + struct.pack("<IQ", n, seed))
        f.write(tokenizers.__version__.encode().ljust(32, b"\0"))
        for a, b in zip(*runs):
            f.write(struct.pack("<QQ", digest(a), digest(b)))
    print("wrote %s: %d texts, seed %d, tokenizers %s" % (out, n, seed, tokenizers.__version__))


if __name__ == "__main__":
    main()
