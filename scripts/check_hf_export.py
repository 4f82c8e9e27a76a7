#!/usr/bin/env python3
"""Checks that transformers loads a `zerotrain export` folder and computes ZeroTrain's logits.

    python3 scripts/check_hf_export.py FOLDER TOKENS_FILE ZT_LOGITS_FILE [--tolerance 1e-4]

FOLDER          a Hugging Face folder written by `zerotrain export` (one or several safetensors files).
TOKENS_FILE     safetensors with `tokens` int32 [B, T+1] (the `zerotrain grads --batch` format); the inputs are tokens[:, :T].
ZT_LOGITS_FILE  safetensors with `logits` [B, T, V], as `zerotrain grads --model FOLDER --batch TOKENS_FILE --out FILE` writes it.

The model is loaded with AutoModelForCausalLM.from_pretrained in float32 with eager attention and run on
the CPU. It passes when max |logits_hf - logits_zt| <= tolerance * max(1, max |logits_zt|): an absolute
tolerance of 1e-4 for logits of order 1, relative to the largest logit when they are larger. Prints one
line; exit code 0 on a match, 1 on a mismatch, 2 on bad arguments or a folder transformers cannot load.
"""
import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("tokens_file")
    parser.add_argument("zt_logits_file")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the Hub
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    try:
        tokens = load_file(args.tokens_file)["tokens"].long()
        expected = load_file(args.zt_logits_file)["logits"].float()
        model = AutoModelForCausalLM.from_pretrained(args.folder, dtype=torch.float32, attn_implementation="eager")
    except Exception as e:  # noqa: BLE001 - one line for any load failure
        print(f"check_hf_export: cannot load: {type(e).__name__}: {e}".replace("\n", " "))
        return 2
    model.eval()
    inputs = tokens[:, :-1]
    with torch.no_grad():
        logits = model(input_ids=inputs).logits.float()
    if logits.shape != expected.shape:
        print(f"check_hf_export: {args.folder}: MISMATCH logits shape {tuple(logits.shape)} vs ZeroTrain {tuple(expected.shape)}")
        return 1
    diff = (logits - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    limit = args.tolerance * scale
    verdict = "ok" if diff <= limit else "MISMATCH"
    print(f"check_hf_export: {args.folder}: {type(model).__name__} {verdict}: max |logit diff| {diff:.3e}, "
          f"max |logit| {expected.abs().max().item():.3f}, tolerance {args.tolerance:g} x max(1, max |logit|) = {limit:.3e}")
    return 0 if diff <= limit else 1


if __name__ == "__main__":
    sys.exit(main())
