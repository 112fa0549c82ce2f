#!/usr/bin/env python3
"""Turn the raw Debian exports in RAW_DIR into clean plain text, one file per document.

    clean_corpus.py RAW_DIR OUT_DIR

Writes OUT_DIR/train/<source>__<doc>.txt, OUT_DIR/eval/<source>__<doc>.txt and
OUT_DIR/MANIFEST.tsv. Output text: UTF-8, one paragraph (or verse group / poem line) per line,
single spaces, no markup. Emma and Persuasion go to eval/ and nowhere else.

Called by build_corpus.sh; standard library only.
"""
import html
import os
import re
import sys
import unicodedata

EVAL_DOCS = {"austen__Emma", "austen__Persuasion"}


def norm_ws(s: str) -> str:
    s = unicodedata.normalize("NFC", s)
    s = s.replace("\u00a0", " ")
    return re.sub(r"[ \t]+", " ", s).strip()


def unwrap(text: str, keep_indented_lines: bool = True) -> list:
    """Paragraphs separated by blank lines become one line each. Inside a paragraph, lines
    indented by 4+ spaces relative to the paragraph's least indent (poetry, quotes) stay
    separate lines."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [l.rstrip() for l in block.split("\n") if l.strip()]
        if not lines:
            continue
        base = min(len(l) - len(l.lstrip()) for l in lines)
        cur = []
        for l in lines:
            ind = len(l) - len(l.lstrip()) - base
            if keep_indented_lines and ind >= 4:
                if cur:
                    out.append(norm_ws(" ".join(cur)))
                    cur = []
                out.append(norm_ws(l))
            else:
                cur.append(l.strip())
        if cur:
            out.append(norm_ws(" ".join(cur)))
    return [p for p in out if p]


def austen(raw, emit):
    d = os.path.join(raw, "austen")
    if not os.path.isdir(d):
        return
    for f in sorted(os.listdir(d)):
        name = f[:-4]
        text = open(os.path.join(d, f), encoding="utf-8", errors="replace").read()
        text = text.replace("_", "")  # janeaustenr marks italics with underscores
        paras = unwrap(text, keep_indented_lines=False)
        emit("austen", name, paras, "r-cran-janeaustenr")


KJV_BOOKS = None


def kjv(raw, emit):
    p = os.path.join(raw, "kjv.txt")
    if not os.path.exists(p):
        return
    books = {}  # abbrev -> {chapter: [verses]}
    order = []
    for line in open(p, encoding="latin-1"):
        m = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line.rstrip("\n"))
        if not m:
            continue
        b, c, _, t = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if b not in books:
            books[b] = {}
            order.append(b)
        books[b].setdefault(c, []).append(norm_ws(t))
    for i, b in enumerate(order):
        paras = [" ".join(vs) for _, vs in sorted(books[b].items())]
        emit("kjv", "%02d_%s" % (i + 1, b), paras, "bible-kjv + bible-kjv-text")


def web(raw, emit):
    p = os.path.join(raw, "web.imp")
    if not os.path.exists(p):
        return
    text = open(p, encoding="utf-8", errors="replace").read()
    books = {}
    order = []
    for ent in text.split("$$$")[1:]:
        head, _, body = ent.partition("\n")
        m = re.match(r"^(.*) (\d+):(\d+)$", head.strip())
        if not m:
            continue
        book, ch, vs = m.group(1), int(m.group(2)), int(m.group(3))
        if ch == 0 or vs == 0:
            continue  # prefaces, book and chapter headings
        body = re.sub(r"<note\b.*?</note>", " ", body, flags=re.S)
        body = re.sub(r"<title\b.*?</title>", " ", body, flags=re.S)
        body = re.sub(r"<[^>]*>", "", body)
        body = norm_ws(html.unescape(body))
        if not body:
            continue
        if book not in books:
            books[book] = {}
            order.append(book)
        books[book].setdefault(ch, []).append(body)
    for i, b in enumerate(order):
        paras = [" ".join(vs) for _, vs in sorted(books[b].items())]
        emit("web", "%02d_%s" % (i + 1, re.sub(r"[^A-Za-z0-9]+", "_", b)), paras,
             "sword-text-web + libsword-utils")


def jargon(raw, emit):
    p = os.path.join(raw, "jargon.txt")
    if not os.path.exists(p):
        return
    text = open(p, encoding="utf-8", errors="replace").read()
    # Skip the front table of contents: start at the second "Welcome to the Jargon File".
    k = text.find("Welcome to the Jargon File", text.find("Welcome to the Jargon File") + 1)
    text = text[k:] if k > 0 else text
    text = re.sub(r"[═─]{5,}", "", text)
    paras = []
    for para in unwrap(text):
        words = para.split()
        # Table-of-contents and index lines: short single-line items without punctuation.
        if len(words) <= 6 and not para.startswith(":") and not re.search(r"[.!?:;,”\"]$", para):
            continue
        para = re.sub(r"\{([^{}]*)\}", r"\1", para)  # {cross-reference} -> cross-reference
        paras.append(para)
    emit("jargon", "jargon_file_4.4.7", paras, "jargon-text")


def dictd(raw, emit, name, src, pkg):
    p = os.path.join(raw, name)
    if not os.path.exists(p):
        return
    text = open(p, encoding="utf-8", errors="replace").read()
    lines = [l for l in text.split("\n") if not l.startswith("00-database") and not l.startswith("00database")]
    text = "\n".join(lines)
    if src == "devil":
        k = text.find("THE DEVIL'S DICTIONARY")
        text = text[k:] if k > 0 else text
        text = text.replace("_", "")
        paras = unwrap(text)
        emit(src, "devils_dictionary", paras, pkg)
        return
    if src == "foldoc":
        paras = []
        for para in unwrap(text):
            if re.fullmatch(r"\(\d{4}-\d{2}-\d{2}\)", para):
                continue  # revision dates
            para = re.sub(r"\{?\((?:https?|ftp|mailto|news):[^)]*\)\}?", "", para)  # link targets
            para = re.sub(r"<(?:https?|ftp|mailto):[^>]*>", "", para)
            para = re.sub(r"[{}]", "", para)
            para = norm_ws(para)
            if para:
                paras.append(para)
        for i in range(0, len(paras), 4000):
            emit(src, "part%02d" % (i // 4000), paras[i:i + 4000], pkg)
        return
    # GCIDE: drop the "[1913 Webster]"-style source lines and the \Head*word\ pronunciations,
    # turn the ASCII accent notation ([=a], ['e], [ae], ...) into plain letters; documents are runs
    # of 3000 consecutive paragraphs, in dictionary order.
    k = text.find("\nA \\A\\")
    text = text[k:] if k > 0 else text
    text = re.sub(r"(?m)^\s*\[[^\]\n]*\]\s*$", "", text)
    text = re.sub(r"\\[^\\\n]*\\", "", text)
    for a, b in (("[ae]", "ae"), ("[AE]", "Ae"), ("[oe]", "oe"), ("[OE]", "Oe"), ("[imac]", "i"),
                 ("[aum]", "a"), ("[eth]", "th"), ("[th]", "th"), ("[root]", "")):
        text = text.replace(a, b)
    text = re.sub(r"\[[=.~\-`'\"^]?([a-zA-Z]{1,2})[\^]?\]", r"\1", text)
    text = re.sub(r"[{}]", "", text)
    paras = [p for p in unwrap(text) if len(p) > 1]
    for i in range(0, len(paras), 3000):
        emit(src, "part%03d" % (i // 3000), paras[i:i + 3000], pkg)


def main():
    raw, out = sys.argv[1], sys.argv[2]
    manifest = []

    def emit(source, doc, paras, pkg):
        key = "%s__%s" % (source, doc)
        split = "eval" if key in EVAL_DOCS else "train"
        body = "\n".join(paras) + "\n"
        with open(os.path.join(out, split, key + ".txt"), "w", encoding="utf-8") as f:
            f.write(body)
        manifest.append((split, key + ".txt", len(body.encode("utf-8")), len(body.split()), pkg))

    austen(raw, emit)
    kjv(raw, emit)
    web(raw, emit)
    jargon(raw, emit)
    dictd(raw, emit, "devil.dict", "devil", "dict-devil")
    dictd(raw, emit, "foldoc.dict", "foldoc", "dict-foldoc")
    dictd(raw, emit, "gcide.dict", "gcide", "dict-gcide")
    with open(os.path.join(out, "MANIFEST.tsv"), "w") as f:
        f.write("split\tfile\tbytes\twords\tpackage\n")
        for r in manifest:
            f.write("\t".join(map(str, r)) + "\n")
    tot = {}
    for split, _, b, w, pkg in manifest:
        t = tot.setdefault((split, pkg), [0, 0, 0])
        t[0] += 1
        t[1] += b
        t[2] += w
    for (split, pkg), (n, b, w) in sorted(tot.items()):
        print("[corpus] %-5s %-34s %4d docs %9d bytes %8d words" % (split, pkg, n, b, w))
    if not any(s == "eval" for s, *_ in manifest):
        print("[corpus] warning: no held-out documents (Austen missing?)", file=sys.stderr)


if __name__ == "__main__":
    main()
