#!/usr/bin/env python3
"""Trains tests/data/tokenizer/small_bpe.json: a small byte-level BPE tokenizer.json made like
GPT-NeoX-20B's (NFC, ByteLevel without prefix space, GPT-2 split, ByteLevel decoder, special
<|endoftext|> and <|padding|>, normalized space-run added tokens), so the tokenizer tests also run
where ../shared/data/gpt-neox-20b/ is absent. It also carries added tokens with the lstrip, rstrip
and single_word flags, which the GPT-NeoX file does not use.

Training text: public-domain books from Debian packages, as built by tools/data/build_corpus.sh
into .corpus/train/: Jane Austen's four training novels (r-cran-janeaustenr), the King James Bible
(bible-kjv-text) and Ambrose Bierce's The Devil's Dictionary (dict-devil).

  python3 tools/tokenizer/train_small.py [CORPUS_TRAIN_DIR] [OUT_JSON]
"""
import glob
import os
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, \
    processors, trainers

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, ".corpus", "train")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests", "data", "tokenizer",
                                                         "small_bpe.json")
files = sorted(glob.glob(os.path.join(corpus, "austen__*.txt")) +
               glob.glob(os.path.join(corpus, "kjv__*.txt")) +
               glob.glob(os.path.join(corpus, "devil__*.txt")))
if not files:
    sys.exit("no austen__/kjv__/devil__ files in %s (run tools/data/build_corpus.sh)" % corpus)

tok = Tokenizer(models.BPE())
tok.normalizer = normalizers.NFC()
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
tok.decoder = decoders.ByteLevel()
tok.post_processor = processors.ByteLevel(trim_offsets=True)
trainer = trainers.BpeTrainer(vocab_size=2048, min_frequency=2, show_progress=False,
                              special_tokens=["<|endoftext|>", "<|padding|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train(files, trainer)
# Like GPT-NeoX: runs of 8 down to 2 spaces, not special, matched after normalization.
tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in range(8, 1, -1)])
# Flags the GPT-NeoX file does not use.
tok.add_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False)])
tok.add_tokens([AddedToken("thee", single_word=True, normalized=True)])
tok.add_special_tokens([AddedToken("<sep>", single_word=True, lstrip=True)])
tok.save(out)
print("wrote %s (%d bytes, vocab %d) from %d files" % (out, os.path.getsize(out),
                                                       tok.get_vocab_size(), len(files)))
