#!/usr/bin/env python3
"""Checks that transformers generates ZeroTrain's greedy continuation from a `zerotrain export` folder.

    python3 scripts/check_hf_generate.py FOLDER PROMPT_IDS EXPECTED_IDS [FOLDER PROMPT_IDS EXPECTED_IDS ...]

FOLDER        a Hugging Face folder written by `zerotrain export`.
PROMPT_IDS    the prompt's token ids, comma-separated.
EXPECTED_IDS  the ids ZeroTrain's engine generated greedily after the prompt (what `zerotrain generate
              --temperature 0` prints as text), comma-separated.

The model is loaded with AutoModelForCausalLM.from_pretrained in float32 with eager attention on the CPU
and runs model.generate(do_sample=False) — greedy, with transformers' own KV cache — for as many new tokens
as EXPECTED_IDS has ids. Several (FOLDER, PROMPT, EXPECTED) triples share one start of Python. Prints one line
per folder; exit code 0 when every folder gives the same tokens, 1 when one differs, 2 when one cannot be loaded.
"""
import argparse
import os
import sys


def check(folder: str, prompt_ids: str, expected_ids: str) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    except Exception as e:  # noqa: BLE001 - one line for any load failure
        print(f"check_hf_generate: {folder}: cannot load: {type(e).__name__}: {e}".replace("\n", " "))
        return 2
    model.eval()
    prompt = [int(t) for t in prompt_ids.split(",")]
    expected = [int(t) for t in expected_ids.split(",")]
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=len(expected), min_new_tokens=len(expected),
                             do_sample=False, use_cache=True, pad_token_id=0)
    generated = out[0, len(prompt):].tolist()
    same = generated == expected
    first = next((i for i, (a, b) in enumerate(zip(generated, expected)) if a != b), None)
    detail = "" if same or first is None else f" (first difference at token {first}: transformers {generated[first]}, ZeroTrain {expected[first]})"
    print(f"check_hf_generate: {folder}: {type(model).__name__} {'ok' if same else 'MISMATCH'}: "
          f"{len(generated)} greedy tokens, {len(set(generated))} distinct{detail}")
    return 0 if same else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("triples", nargs="+", metavar="FOLDER PROMPT_IDS EXPECTED_IDS")
    args = parser.parse_args()
    if len(args.triples) % 3 != 0:
        parser.error("expected FOLDER PROMPT_IDS EXPECTED_IDS triples")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders: never ask the Hub
    codes = [check(*args.triples[i:i + 3]) for i in range(0, len(args.triples), 3)]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
