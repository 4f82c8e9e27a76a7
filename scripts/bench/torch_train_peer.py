#!/usr/bin/env python3
"""PyTorch peer of `zerotrain bench train`: the same model shapes (Llama, or Mixtral for a
moe_config), AdamW, random tokens, timed full training steps on CPU.

    python scripts/bench/torch_train_peer.py --config configs/bench-medium.yaml --precision bf16 --threads 2 --steps 3

--precision bf16 wraps forward and loss in torch.autocast("cpu", dtype=torch.bfloat16) (fp32
weights, gradients and optimizer), as PyTorch users train in mixed precision on CPU. Prints one
JSON object: tokens_per_second and the median step time. Needs torch, transformers and PyYAML
(install them in a virtual environment outside the repository).
"""
import argparse
import json
import statistics
import time

import torch
import yaml


def build(model_cfg):
    heads = model_cfg["num_attention_heads"]
    common = dict(
        vocab_size=model_cfg.get("vocab_size", 256),
        hidden_size=model_cfg["hidden_size"],
        intermediate_size=model_cfg.get("intermediate_size", 4 * model_cfg["hidden_size"]),
        num_hidden_layers=model_cfg["num_layers"],
        num_attention_heads=heads,
        num_key_value_heads=model_cfg.get("num_key_value_heads") or heads,
        max_position_embeddings=model_cfg.get("max_seq_len", 2048),
        rms_norm_eps=model_cfg.get("norm_eps", 1e-5),
        rope_theta=model_cfg.get("rope_theta", 10000.0),
        tie_word_embeddings=model_cfg.get("tie_embeddings", False),
        attention_dropout=0.0,
    )
    moe = model_cfg.get("moe_config")
    if moe:
        from transformers import MixtralConfig, MixtralForCausalLM
        cfg = MixtralConfig(num_local_experts=moe["num_experts"], num_experts_per_tok=moe["top_k"],
                            output_router_logits=False, **common)
        return MixtralForCausalLM(cfg)
    from transformers import LlamaConfig, LlamaForCausalLM
    return LlamaForCausalLM(LlamaConfig(**common))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    cfg = yaml.safe_load(open(a.config))
    training, data = cfg.get("training", {}), cfg.get("data", {})
    threads = a.threads or training.get("threads", 1)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(cfg["model"])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=training.get("lr", 3e-4), betas=(0.9, 0.95), weight_decay=0.1)
    batch, seq = training.get("micro_batch_size", 8), data.get("seq_len", 128)
    vocab = model.config.vocab_size
    tokens = torch.randint(0, vocab, (a.steps + 1, batch, seq + 1))

    def step(i):
        x, y = tokens[i, :, :-1], tokens[i, :, 1:]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step(0)  # warm-up
    times = sorted(step(i + 1) for i in range(a.steps))
    median = statistics.median(times)
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "config": a.config, "precision": a.precision,
                      "threads": threads, "steps": a.steps, "step_seconds_median": median,
                      "tokens_per_second": batch * seq / median}))


if __name__ == "__main__":
    main()
