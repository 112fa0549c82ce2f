#!/usr/bin/env bash
# Build the decimamba training/evaluation corpus from Debian packages only.
#
#   tools/data/build_corpus.sh [OUT_DIR] [--no-install] [--minimal]
#
# OUT_DIR defaults to .corpus/ in the project root (ignored by git; add `/.corpus/` to
# .git/info/exclude or .gitignore). Layout written:
#   OUT_DIR/raw/                 raw exports (R, bible, mod2imp, dictd) - intermediate
#   OUT_DIR/train/<source>__<doc>.txt   training split, one file per document
#   OUT_DIR/eval/<source>__<doc>.txt    held-out split: Emma and Persuasion (never trained on)
#   OUT_DIR/MANIFEST.tsv         split, file, bytes, words, package
#
# Sources (Debian packages): r-cran-janeaustenr (+ R to extract), bible-kjv + bible-kjv-text,
# sword-text-web + libsword-utils (mod2imp), jargon-text, dict-devil, and for volume dict-gcide
# (GNU Collaborative International Dictionary of English) and dict-foldoc (Free On-line
# Dictionary of Computing); --minimal leaves those two out.
# A package that cannot be installed is reported and skipped; the rest still build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/.corpus"
install=1
gcide=1
for a in "$@"; do
  case "$a" in
    --no-install) install=0 ;;
    --minimal) gcide=0 ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) out="$a" ;;
  esac
done

pkgs=(r-base-core r-cran-janeaustenr bible-kjv bible-kjv-text sword-text-web libsword-utils
      jargon-text dict-devil)
[[ $gcide == 1 ]] && pkgs+=(dict-gcide dict-foldoc)

if [[ $install == 1 ]]; then
  apt-get update -qq || echo "[corpus] warning: apt-get update failed" >&2
  for p in "${pkgs[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" \
        >/dev/null 2>&1 || echo "[corpus] warning: package $p unavailable, skipping it" >&2
    fi
  done
fi

raw="$out/raw"
rm -rf "$out/train" "$out/eval" "$raw"
mkdir -p "$raw" "$out/train" "$out/eval"

# Jane Austen: one text file per novel, the lines exactly as janeaustenr ships them.
if command -v Rscript >/dev/null && Rscript -e 'library(janeaustenr)' >/dev/null 2>&1; then
  Rscript -e '
    library(janeaustenr)
    b <- austen_books()
    for (t in unique(as.character(b$book))) {
      f <- file.path(commandArgs(TRUE)[1], paste0(gsub("[^A-Za-z]+", "_", t), ".txt"))
      writeLines(b$text[as.character(b$book) == t], f, useBytes = TRUE)
    }' "$raw" >/dev/null
  mkdir -p "$raw/austen" && mv "$raw"/*.txt "$raw/austen/"
else
  echo "[corpus] warning: R or janeaustenr missing, no Austen" >&2
fi

# King James Bible: the `bible` program (bible-kjv) reads bible.data (bible-kjv-text);
# -f turns pretty-printing off: one verse a line, "Ge1:1 text".
if command -v bible >/dev/null; then
  bible -f 'Gen1:1-Rev22:21' </dev/null >"$raw/kjv.txt" || echo "[corpus] warning: bible failed" >&2
else
  echo "[corpus] warning: bible-kjv missing, no KJV" >&2
fi

# World English Bible (with Deuterocanon): OSIS markup exported by mod2imp.
if command -v mod2imp >/dev/null && [[ -d /usr/share/sword/modules/texts/ztext/engWEB2015eb ]]; then
  mod2imp engWEB2015eb >"$raw/web.imp" 2>/dev/null || echo "[corpus] warning: mod2imp failed" >&2
else
  echo "[corpus] warning: sword-text-web/libsword-utils missing, no WEB" >&2
fi

# Jargon File 4.4.7: plain text shipped gzipped.
if [[ -f /usr/share/doc/jargon-text/jargon.txt.gz ]]; then
  zcat /usr/share/doc/jargon-text/jargon.txt.gz >"$raw/jargon.txt"
else
  echo "[corpus] warning: jargon-text missing" >&2
fi

# Devil's Dictionary and GCIDE: dictd .dict.dz files are gzip-compatible (dictzip).
[[ -f /usr/share/dictd/devil.dict.dz ]] && zcat /usr/share/dictd/devil.dict.dz >"$raw/devil.dict" \
  || echo "[corpus] warning: dict-devil missing" >&2
if [[ $gcide == 1 ]]; then
  for d in gcide foldoc; do
    [[ -f /usr/share/dictd/$d.dict.dz ]] && zcat /usr/share/dictd/$d.dict.dz >"$raw/$d.dict" \
      || echo "[corpus] warning: dict-$d missing" >&2
  done
fi

python3 "$here/clean_corpus.py" "$raw" "$out"
echo "[corpus] done: $out"
