#!/usr/bin/env python
"""Build the embedded ActiveKD demo dataset from WordNet 3.0 noun glosses.

Reads /usr/share/wordnet/data.noun (Debian package ``wordnet-base``) and writes
``pcoreset/data/wordnet_supersenses.csv.gz`` (the demo's 6 classes) or, with
``--all``, ``pcoreset/data/wordnet25_supersenses.csv.gz`` (all 25 noun supersenses,
lexicographer files 04-28; noun.Tops is left out) with columns ``id,text,label,split``:

- ``id``: ``wn:<synset offset>``;
- ``text``: ``"<first lemma>: <definition>"`` (the gloss up to its usage examples);
- ``label``: the supersense (WordNet lexicographer file) without its ``noun.`` prefix;
- ``split``: ``train`` (the active-learning pool) or ``test``.

Classes are balanced: ``--per-class`` synsets drawn at random (``--seed``) from each
supersense, ``--test-per-class`` of them held out for testing. A supersense with
fewer synsets than ``--per-class`` is an error, unless ``--all`` is given: then it
keeps all its synsets and holds out the same share for testing (noun.motive has 42). The lexicographer file
number is field 2 of each data line (WordNet's ``lexnames``: 05 noun.animal,
06 noun.artifact, 13 noun.food, 15 noun.location, 18 noun.person, 20 noun.plant, ...).
Also copies WordNet's license text (from the Debian copyright file) next to it.

    python scripts/build_wordnet_dataset.py
    python scripts/build_wordnet_dataset.py --all --per-class 160 --test-per-class 40
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import re
from pathlib import Path

# WordNet 3.0 lexnames (noun part): file number -> supersense.
LEXNAMES = {
    3: "Tops", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body",
    9: "cognition", 10: "communication", 11: "event", 12: "feeling", 13: "food",
    14: "group", 15: "location", 16: "motive", 17: "object", 18: "person",
    19: "phenomenon", 20: "plant", 21: "possession", 22: "process", 23: "quantity",
    24: "relation", 25: "shape", 26: "state", 27: "substance", 28: "time",
}
DEFAULT_CLASSES = ["animal", "plant", "food", "artifact", "person", "location"]
REPO = Path(__file__).resolve().parents[1]


def parse_data_noun(path: Path):
    """Yield (offset, lexfile number, first lemma, definition) for each synset."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  "):  # license header lines
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, lexfile, n_words = fields[0], int(fields[1]), int(fields[3], 16)
            lemma = fields[4].replace("_", " ")
            lemma = re.sub(r"\([a-z]+\)$", "", lemma)  # adjective markers such as (a)
            definition = gloss.split('; "')[0].strip().rstrip(";").strip()
            if n_words >= 1 and definition:
                yield offset, lexfile, lemma, definition


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wordnet", default="/usr/share/wordnet/data.noun")
    ap.add_argument("--license-source", default="/usr/share/doc/wordnet-base/copyright")
    ap.add_argument("--out", default=None, help="default: pcoreset/data/wordnet_supersenses.csv.gz, with --all "
                    "pcoreset/data/wordnet25_supersenses.csv.gz")
    ap.add_argument("--classes", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_CLASSES)}")
    ap.add_argument("--all", action="store_true", help="all 25 noun supersenses (lexicographer files 04-28)")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--test-per-class", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.all and args.classes:
        raise SystemExit("--all and --classes exclude each other")
    if args.all:
        args.classes = [name for num, name in sorted(LEXNAMES.items()) if num >= 4]
    args.classes = args.classes or DEFAULT_CLASSES
    name = "wordnet25_supersenses.csv.gz" if args.all else "wordnet_supersenses.csv.gz"
    args.out = args.out or str(REPO / "pcoreset" / "data" / name)

    wanted = {num: name for num, name in LEXNAMES.items() if name in args.classes}
    missing = set(args.classes) - set(wanted.values())
    if missing:
        raise SystemExit(f"unknown supersense(s) {sorted(missing)}; known: {sorted(LEXNAMES.values())}")
    by_class = {name: [] for name in args.classes}
    for offset, lexfile, lemma, definition in parse_data_noun(Path(args.wordnet)):
        if lexfile in wanted:
            by_class[wanted[lexfile]].append((offset, f"{lemma}: {definition}"))

    rng = random.Random(args.seed)
    rows = []
    for name in args.classes:
        items = by_class[name]
        take, n_test = args.per_class, args.test_per_class
        if len(items) < args.per_class:
            if not args.all:
                raise SystemExit(f"supersense {name} has {len(items)} synsets < --per-class={args.per_class}")
            take = len(items)
            n_test = round(take * args.test_per_class / args.per_class)
        chosen = rng.sample(items, take)
        for k, (offset, text) in enumerate(chosen):
            rows.append((f"wn:{offset}", text, name, "test" if k < n_test else "train"))
    rng.shuffle(rows)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "text", "label", "split"])
    writer.writerows(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the file byte-identical across rebuilds.
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue().encode("utf-8"))

    text = Path(args.license_source).read_text(encoding="utf-8")
    block = text.split("License: WordNet3.0", 1)[1].split("\nFiles:", 1)[0]
    body = "\n".join("" if ln.strip() == "." else ln[1:] for ln in block.strip("\n").splitlines())
    (out.parent / "WORDNET_LICENSE").write_text(
        "The files wordnet_supersenses.csv.gz and wordnet25_supersenses.csv.gz are derived from\n"
        "WordNet 3.0 (noun glosses and lexicographer files), distributed under the following license.\n\n"
        "WordNet Release 3.0\n\n" + body.strip() + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} rows ({len(args.classes)} classes) to {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
