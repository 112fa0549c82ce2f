#!/usr/bin/env python3
"""Property test: fresh random strings, encoded by decimamba and by Hugging Face `tokenizers`.

  property_test.py --bench BUILD/bench_tokenizer --tokenizer T.json [--tokenizer T2.json]
                   [--count 3000] [--seed N]

Strings mix random code points from all of Unicode (assigned or not, every plane), combining
marks (for NFC), white-space runs of every kind, special-token fragments, contractions, digits and
invalid UTF-8. Both parse_special settings are checked. Any difference fails, printing the string
(Python repr of its bytes) and both id lists. The seed is printed so that a failure can be rerun.
"""
import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

WS = [0x20] * 6 + [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0xA0, 0x1680, 0x2000, 0x2005, 0x200A,
                   0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x200B, 0x180E, 0xFEFF, 0x1C, 0x1F]
FRAGMENTS = ["<|endoftext|>", "<|padding|>", "<|", "|>", "endoftext", "<|endoftext", "|><|", "[MASK]", " [MASK]  ", "<sep>", " <sep> ", "thee", "thee's", "_thee",
             "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "'S", "n't", "<|endoftext|>" * 2]
WORDS = ["the", "pass", "key", "is", "Hello", "world", "naïve", "123", "4567", "x86", "don't",
         "Mamba", "tokenizer", "ü", "ß", "中文", "العربية", "עברית", "Ελληνικά", "русский"]
INVALID = [b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf",
           b"\xff", b"\xf5\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf"]


def cp_bytes(c):
    return chr(c).encode("utf-8")


def random_cp(rng, marks):
    r = rng.random()
    if r < 0.35:  # anywhere in Unicode
        while True:
            c = rng.randrange(0x110000)
            if not 0xD800 <= c <= 0xDFFF:
                return c
    if r < 0.55:  # the BMP, where most scripts are
        while True:
            c = rng.randrange(0x80, 0x10000)
            if not 0xD800 <= c <= 0xDFFF:
                return c
    if r < 0.75:
        return rng.choice(marks)
    if r < 0.85:
        return rng.randrange(0x20, 0x7F)
    return rng.choice([rng.randrange(0x4E00, 0xA000), rng.randrange(0x1F300, 0x1FA00),
                       rng.randrange(0x0600, 0x0700), rng.randrange(0x0590, 0x0600),
                       rng.randrange(0xAC00, 0xD7A4), rng.randrange(0x0900, 0x0980)])


def random_text(rng, marks):
    out = []
    for _ in range(rng.randint(1, 10)):
        kind = rng.random()
        if kind < 0.35:
            out.append(b"".join(cp_bytes(random_cp(rng, marks)) for _ in range(rng.randint(1, 8))))
        elif kind < 0.5:
            out.append(b"".join(cp_bytes(rng.choice(WS)) for _ in range(rng.randint(1, 30))))
        elif kind < 0.6:
            out.append(b" " * rng.randint(2, 50))
        elif kind < 0.72:
            out.append(rng.choice(FRAGMENTS).encode())
        elif kind < 0.9:
            out.append(rng.choice(WORDS).encode())
        elif kind < 0.95:
            out.append(str(rng.randrange(10 ** rng.randint(1, 12))).encode())
        else:
            out.append(rng.choice(INVALID))
        if rng.random() < 0.4:
            out.append(b" ")
    return b"".join(out)


def write_texts(path, texts):
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(texts)))
        for t in texts:
            f.write(struct.pack("<I", len(t)))
            f.write(t)


def read_ids(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<I", data, 0)
    off, out = 4, []
    for _ in range(n):
        (k,) = struct.unpack_from("<I", data, off)
        off += 4
        out.append(list(struct.unpack_from("<%dI" % k, data, off)))
        off += 4 * k
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--tokenizer", action="append", required=True)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    import unicodedata
    marks = [c for c in range(0x300, 0x110000)
             if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)).startswith("M")]
    rng = random.Random(seed)
    texts = [random_text(rng, marks) for _ in range(a.count)]
    import tokenizers
    print("property test: seed %d, %d strings, tokenizers %s" % (seed, len(texts),
                                                                 tokenizers.__version__))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tin = os.path.join(tmp, "texts.bin")
        write_texts(tin, texts)
        for tok in a.tokenizer:
            for flag in ([], ["--parse-special"]):
                ours_p, theirs_p = os.path.join(tmp, "ours.bin"), os.path.join(tmp, "theirs.bin")
                subprocess.check_call([a.bench, "encode", tok, tin, ours_p] + flag)
                oracle.main(["oracle", "encode", tok, tin, theirs_p] + flag)
                ours, theirs = read_ids(ours_p), read_ids(theirs_p)
                bad = [i for i in range(len(texts)) if ours[i] != theirs[i]]
                print("  %s %s: %d/%d identical" % (os.path.basename(tok), flag or "user text",
                                                    len(texts) - len(bad), len(texts)))
                for i in bad[:10]:
                    print("    MISMATCH text=%r\n      decimamba  %s\n      tokenizers %s"
                          % (texts[i], ours[i], theirs[i]))
                failures += len(bad)
    if failures:
        print("property test FAILED (seed %d): %d mismatches" % (seed, failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
