#!/usr/bin/env python3
"""The Hugging Face `tokenizers` side of decimamba's tokenizer checks.

  oracle.py encode TOKENIZER_JSON IN.bin OUT.bin [--parse-special]
      Encodes each text of IN.bin (u32 count, then u32 length + bytes per text) and writes the ids
      (u32 count, then u32 n + n u32 ids per text). Bytes that are not UTF-8 are replaced the way
      decimamba does it (bytes.decode("utf-8", "replace"): one U+FFFD per maximal invalid
      subpart). Without --parse-special, special tokens in the text are plain text
      (encode_special_tokens = True), which is decimamba's default for user text.
  oracle.py ids TOKENIZER_JSON TEXT [--parse-special]
      Prints the ids of one text (Python string escapes allowed: 'a\\tb').
  oracle.py version
"""
import struct
import sys


def read_texts(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<I", data, 0)
    off = 4
    texts = []
    for _ in range(n):
        (k,) = struct.unpack_from("<I", data, off)
        off += 4
        texts.append(data[off:off + k])
        off += k
    return texts


def load(path, parse_special):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    tok.encode_special_tokens = not parse_special
    return tok


def main(argv):
    if len(argv) >= 2 and argv[1] == "version":
        import tokenizers
        print(tokenizers.__version__)
        return 0
    if len(argv) in (5, 6) and argv[1] == "encode":
        parse_special = len(argv) == 6 and argv[5] == "--parse-special"
        tok = load(argv[2], parse_special)
        texts = [t.decode("utf-8", "replace") for t in read_texts(argv[3])]
        encs = tok.encode_batch(texts, add_special_tokens=False)
        out = [struct.pack("<I", len(encs))]
        for e in encs:
            out.append(struct.pack("<I%dI" % len(e.ids), len(e.ids), *e.ids))
        with open(argv[4], "wb") as f:
            f.write(b"".join(out))
        return 0
    if len(argv) in (4, 5) and argv[1] == "ids":
        tok = load(argv[2], len(argv) == 5 and argv[4] == "--parse-special")
        text = argv[3].encode("utf-8", "surrogateescape").decode("unicode_escape")
        print(tok.encode(text, add_special_tokens=False).ids)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
