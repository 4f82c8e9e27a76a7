#!/usr/bin/env python3
"""Writes Tests/Fixtures/evaluation/{bleu,squad}.json: the expected scores of ZeroTrain's
Evaluation module (CorpusBLEU, SQuADMetrics), computed by sacreBLEU itself and by the SQuAD v1.1
evaluation script's definitions.

    python3 -m venv /work/venv-eval && /work/venv-eval/bin/pip install sacrebleu
    /work/venv-eval/bin/python scripts/make-eval-fixtures.py

The BLEU cases are sacreBLEU's own README example, WMT-style sentences that exercise every rule
of the 13a tokeniser (entities, hyphenation across lines, numbers with dots, commas and dashes,
symbols, non-ASCII text), several references of different lengths (closest-length choice and
clipping), short and empty hypotheses (brevity penalty, zero matches), under each smoothing
method, lower-casing, tokenize='none' and effective order.

The SQuAD functions below restate the official evaluate-v1.1.py (normalize_answer, f1_score,
exact_match_score, metric_max_over_ground_truths; corpus figures are means x 100); that script
is not on PyPI, so it is written out here from its definition.
"""
import collections
import json
import os
import re
import string
import sys

import sacrebleu
from sacrebleu.metrics import BLEU

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "evaluation")

# --- BLEU --------------------------------------------------------------------------------------

README_HYP = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
               ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]

WMT_HYP = [
    "The president said on Tuesday that 3,000 jobs - or 12.5% of the workforce - would go.",
    "Prices rose by 1.5 per cent in the year to March, the office said.",
    "He paid $20.50 for a ticket &amp; a programme at the \"Royal\" theatre.",
    "The well-known author, aged 72, re-\nleased a new book: \"Time &amp; Tide\".",
    "Die Regierung hat am Montag 2-3 neue Gesetze verabschiedet.",
    "Café owners in Zürich complained about the new rules <skipped> again.",
    "It is 5-4 to the home side after 90 minutes.",
    "Email john@example.com or call (555) 123-4567 for {details}.",
]
WMT_REFS = [[
    "The president said on Tuesday that 3,000 jobs, or 12.5% of the workforce, would be cut.",
    "Prices went up 1.5 per cent in the year to March, the office said.",
    "He paid $20.50 for a ticket and a programme at the \"Royal\" theatre.",
    "The well-known author, 72, released a new book: \"Time &amp; Tide\".",
    "Die Regierung verabschiedete am Montag 2-3 neue Gesetze.",
    "Café owners in Zürich complained again about the new rules.",
    "The home side leads 5-4 after 90 minutes.",
    "Email john@example.com or call (555) 123-4567 for details.",
], [
    "On Tuesday the president announced that 3,000 jobs - 12.5% of the staff - would go.",
    "The office said prices rose 1.5% in the twelve months to March.",
    "A ticket and a programme at the Royal theatre cost him $20.50.",
    "Aged 72, the well-known author has released a new book, \"Time and Tide\".",
    "Am Montag hat die Regierung 2-3 neue Gesetze beschlossen.",
    "In Zürich, café owners again complained about the new rules.",
    "After 90 minutes it is 5-4 to the home side.",
    "For details, email john@example.com or call (555) 123-4567.",
]]

SHORT_HYP = ["the cat", "", "a b c d e f", "on the mat sat the cat"]
SHORT_REFS = [["the cat sat on the mat", "", "a b c d", "the cat sat on the mat"]]

NO_MATCH_HYP = ["completely different words here"]
NO_MATCH_REFS = [["nothing in common at all"]]

ONE_GRAM_HYP = ["cat dog", "bird fish"]
ONE_GRAM_REFS = [["dog cat", "fish bird"]]

CORPORA = {
    "readme": (README_HYP, README_REFS),
    "wmt": (WMT_HYP, WMT_REFS),
    "short": (SHORT_HYP, SHORT_REFS),
    "no_match": (NO_MATCH_HYP, NO_MATCH_REFS),
    "unigrams_only": (ONE_GRAM_HYP, ONE_GRAM_REFS),
}
SETTINGS = [
    dict(smooth_method="exp"),
    dict(smooth_method="none"),
    dict(smooth_method="floor"),
    dict(smooth_method="floor", smooth_value=0.01),
    dict(smooth_method="add-k"),
    dict(smooth_method="add-k", smooth_value=0.5),
    dict(smooth_method="exp", lowercase=True),
    dict(smooth_method="exp", tokenize="none"),
    dict(smooth_method="exp", effective_order=True),
    dict(smooth_method="floor", effective_order=True),
]


def bleu_cases():
    cases = []
    for name, (hyp, ref_streams) in CORPORA.items():
        # sacreBLEU takes reference streams (one list per reference "system"); ZeroTrain takes per-hypothesis lists.
        per_hypothesis = [[stream[i] for stream in ref_streams] for i in range(len(hyp))]
        for setting in SETTINGS:
            bleu = BLEU(**setting)
            s = bleu.corpus_score(hyp, ref_streams)
            cases.append({
                "corpus": name, "settings": setting, "hypotheses": hyp, "references": per_hypothesis,
                "score": s.score, "precisions": s.precisions, "bp": s.bp, "sys_len": s.sys_len, "ref_len": s.ref_len,
                "counts": s.counts, "totals": s.totals,
            })
    tokenizer = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
    lines = WMT_HYP + [r for stream in WMT_REFS for r in stream] + [
        "a.b,c 1.5 1,000 x.5 5.x 3-4 a-b 4-", "..,, 9.,9 .5 ,5", "&quot;quoted&quot; &lt;tag&gt; &amp;&amp;",
        "tabs\tand  spaces\u00a0here", "hyphen-\nated line\nbreak", "<skipped>gone", "~!@#$%^&*()_+{}|:<>?`-=[]\\;',./",
    ]
    tokens = [{"line": l, "tokens": tokenizer(l)} for l in lines]
    return cases, tokens

# --- SQuAD v1.1 (the official script's definitions) --------------------------------------------


def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def f1_score(prediction, ground_truth):
    p = normalize_answer(prediction).split()
    g = normalize_answer(ground_truth).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0
    precision = same / len(p)
    recall = same / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(fn, prediction, ground_truths):
    return max(fn(prediction, gt) for gt in ground_truths)


SQUAD = [
    ("Denver Broncos", ["Denver Broncos", "Denver Broncos", "Denver Broncos"]),
    ("the Denver Broncos!", ["Denver Broncos"]),
    ("Broncos", ["Denver Broncos", "The Broncos"]),
    ("Carolina Panthers", ["Denver Broncos"]),
    ("Santa Clara, California", ["Santa Clara, California", "Levi's Stadium", "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."]),
    ("Levi's Stadium", ["Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."]),
    ("An apple a day", ["apple day"]),
    ("theater", ["the ater"]),
    ("1,000 people", ["1000 people"]),
    ("gold gold gold", ["gold"]),
    ("the", ["a"]),
    ("", ["something"]),
    ("Über Straße", ["über straße"]),
    ("  spaced\tout\nanswer ", ["spaced out answer"]),
    ("Another-example_here", ["anotherexamplehere"]),
    ("Saint Bernadette Soubirous", ["Saint Bernadette Soubirous"]),
    ("a copper statue of Christ", ["a copper statue of Christ", "the Virgin Mary"]),
    ("the 1870s and 1880s", ["1870s"]),
]


def squad_cases():
    cases = [{"prediction": p, "references": r,
              "exact_match": float(metric_max_over_ground_truths(exact_match_score, p, r)),
              "f1": float(metric_max_over_ground_truths(f1_score, p, r)),
              "normalized": normalize_answer(p)} for p, r in SQUAD]
    total = len(cases)
    corpus = {"exact_match": 100.0 * sum(c["exact_match"] for c in cases) / total,
              "f1": 100.0 * sum(c["f1"] for c in cases) / total}
    return {"cases": cases, "corpus": corpus}


def main():
    os.makedirs(OUT, exist_ok=True)
    cases, tokens = bleu_cases()
    with open(os.path.join(OUT, "bleu.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "scripts/make-eval-fixtures.py", "sacrebleu": sacrebleu.__version__,
                   "cases": cases, "tokenizer_13a": tokens}, f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "squad.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "scripts/make-eval-fixtures.py", "definition": "SQuAD v1.1 evaluate-v1.1.py",
                   **squad_cases()}, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(cases)} BLEU cases, {len(tokens)} tokenizer lines, {len(SQUAD)} SQuAD cases into {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
