#!/usr/bin/env python3
"""The Python side of `zerotrain bench data …`: the same work done with datasketch and tokenizers.

    data_peer.py dedup CORPUS.jsonl NUM_PERM THRESHOLD
    data_peer.py tokenizer CORPUS.jsonl VOCAB_SIZE OUR_TOKENIZER.json

Prints one JSON object on the last line. Word 5-gram shingles on [^A-Za-z_0-9] (plus non-ASCII
letters) like zerotrain's; keep-first union-find over MinHashLSH query results.
"""
import json, re, sys, time

def docs(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]

def dedup(path, num_perm, threshold):
    from datasketch import MinHash, MinHashLSH
    texts = docs(path)
    split = re.compile(r"[^A-Za-z_0-9\u0080-\U0010FFFF]+")
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    parent = list(range(len(texts)))
    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i, t in enumerate(texts):
        words = [w for w in split.split(t.lower()) if w]
        if not words:
            continue
        n = 5 if len(words) >= 5 else len(words)
        m = MinHash(num_perm=num_perm)
        m.update_batch([" ".join(words[k:k + n]).encode() for k in range(len(words) - n + 1)])
        for j in lsh.query(m):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
        lsh.insert(i, m)
    removed = [i for i in range(len(texts)) if find(i) != i]
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "removed": removed, "bands": [lsh.b, lsh.r]}))

def tokenizer(path, vocab_size, ours):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    texts = docs(path)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter()
    tok.train_from_iterator(texts, trainer=trainer)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc = tok.encode_batch(texts)
    encode_seconds = time.perf_counter() - t0
    theirs = Tokenizer.from_file(ours)
    our_tokens = sum(len(e.ids) for e in theirs.encode_batch(texts))
    print(json.dumps({"train_seconds": train_seconds, "encode_seconds": encode_seconds,
                      "tokens": sum(len(e.ids) for e in enc), "our_tokens": our_tokens}))

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "dedup":
        dedup(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif mode == "tokenizer":
        tokenizer(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("usage: data_peer.py dedup|tokenizer …")
