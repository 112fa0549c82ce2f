#!/usr/bin/env python3
"""Train the SentencePiece tokenizer on the corpus' training split and tokenise the corpus.

    python3 tools/train/train_tokenizer.py [--corpus .corpus] [--vocab 8192]

Needs the Python `sentencepiece` package (pip) and the corpus from tools/data/build_corpus.sh.
Writes, under CORPUS/tok/:
  tokenizer.model, tokenizer.vocab   BPE, vocab 8192, digits split, byte fallback, identity
                                     normalisation; ids: <unk>=0, <s>=1, </s>=2, no pad
  train.bin / eval.bin               uint16 token ids: each document (its paragraphs joined by
                                     "\n", encoded in one call, so newlines become the byte token
                                     <0x0A>) followed by </s> (id 2)
  train_docs.tsv / eval_docs.tsv     file, source, first token, token count
  fillers.txt                        sentences (8-60 words) from the training split, one a line:
                                     the filler of the passkey examples
  stats.json                         sizes, tokens per source, tokenizer settings
Sources listed in --exclude (default: none) are left out of tokenizer training and train.bin;
the tokenizer is trained on every training source except --tokenizer-exclude (default: gcide,
whose accent notation and citations would take vocabulary from prose); fillers come from every
training source except --filler-exclude (default: gcide, for the same reason).
Deterministic: one thread, fixed seed, sorted inputs.
"""
import argparse
import json
import os
import random
import re
import sys

import numpy as np
import sentencepiece as spm


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(root, ".corpus"))
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--exclude", default="", help="comma-separated source prefixes to skip")
    ap.add_argument("--tokenizer-exclude", default="gcide",
                    help="sources left out of tokenizer training only (still tokenised)")
    ap.add_argument("--filler-exclude", default="gcide",
                    help="sources whose sentences are not used as passkey filler")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    excl = [s for s in args.exclude.split(",") if s]
    tok = os.path.join(args.corpus, "tok")
    os.makedirs(tok, exist_ok=True)

    def files(split):
        d = os.path.join(args.corpus, split)
        fs = sorted(f for f in os.listdir(d) if f.endswith(".txt"))
        return [os.path.join(d, f) for f in fs if f.split("__")[0] not in excl]

    train_files, eval_files = files("train"), files("eval")
    if not train_files:
        sys.exit("no training files under %s/train (run tools/data/build_corpus.sh)" % args.corpus)

    prefix = os.path.join(tok, "tokenizer")
    spm.SentencePieceTrainer.train(
        input=",".join(f for f in train_files
                       if os.path.basename(f).split("__")[0] not in args.tokenizer_exclude.split(",")),
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=args.vocab,
        byte_fallback=True,
        split_digits=True,
        character_coverage=0.9995,
        required_chars="0123456789",
        normalization_rule_name="identity",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        max_sentence_length=65536,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=1,
    )
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    nl = sp.piece_to_id("<0x0A>")
    assert nl != sp.unk_id(), "byte fallback piece <0x0A> missing"
    eos = sp.eos_id()

    stats = {"vocab_size": sp.get_piece_size(), "model_type": "bpe", "split_digits": True,
             "byte_fallback": True, "normalization": "identity", "newline_id": nl, "eos_id": eos,
             "excluded_sources": excl, "tokenizer_excluded": args.tokenizer_exclude, "splits": {}}
    for split, fs in (("train", train_files), ("eval", eval_files)):
        ids, rows, per_src = [], [], {}
        for f in fs:
            lines = [l for l in open(f, encoding="utf-8").read().split("\n") if l.strip()]
            # The whole document in one call, as the runtime encodes a prompt: a paragraph
            # after a newline starts without the dummy-prefix space, exactly as in a prompt.
            doc = sp.encode("\n".join(lines)) + [eos]
            src = os.path.basename(f).split("__")[0]
            rows.append((os.path.basename(f), src, len(ids), len(doc)))
            per_src[src] = per_src.get(src, 0) + len(doc)
            ids.extend(doc)
        arr = np.asarray(ids, dtype=np.uint16)
        arr.tofile(os.path.join(tok, split + ".bin"))
        with open(os.path.join(tok, split + "_docs.tsv"), "w") as fo:
            fo.write("file\tsource\tstart\tcount\n")
            for r in rows:
                fo.write("\t".join(map(str, r)) + "\n")
        nbytes = sum(os.path.getsize(f) for f in fs)
        stats["splits"][split] = {"docs": len(fs), "tokens": int(arr.size), "bytes": nbytes,
                                  "bytes_per_token": round(nbytes / max(1, arr.size), 3),
                                  "tokens_per_source": per_src}
        print("[tok] %s: %d docs, %d tokens, %.2f bytes/token" % (
            split, len(fs), arr.size, nbytes / max(1, arr.size)))

    # Passkey filler: plain sentences from the training split (no digits, so that the only digits in
    # a passkey prompt are the key's).
    rng = random.Random(args.seed)
    sents = []
    fex = [x for x in args.filler_exclude.split(",") if x]
    for f in train_files:
        if os.path.basename(f).split("__")[0] in fex:
            continue
        for line in open(f, encoding="utf-8"):
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"“‘'])", line.strip()):
                w = s.split()
                if 8 <= len(w) <= 60 and not re.search(r"\d", s) and s[-1:] in ".!?":
                    sents.append(s)
    rng.shuffle(sents)
    sents = sents[:40000]
    with open(os.path.join(tok, "fillers.txt"), "w", encoding="utf-8") as fo:
        fo.write("\n".join(sents) + "\n")
    stats["fillers"] = len(sents)
    with open(os.path.join(tok, "stats.json"), "w") as fo:
        json.dump(stats, fo, indent=1)
    demo = "The pass key is 31415. Remember it.\nAnswer: 31415"
    print("[tok] demo:", sp.encode(demo, out_type=str))
    print("[tok] %d filler sentences; wrote %s" % (len(sents), tok))


if __name__ == "__main__":
    main()
