#!/usr/bin/env python3
"""Writes Tests/Fixtures/distillation/kd.json: the distillation loss and its gradient with
respect to the student's logits, by PyTorch:

    loss = alpha * T^2 * KLDivLoss(reduction="batchmean")(log_softmax(s / T), softmax(t / T))
           + (1 - alpha) * cross_entropy(s, labels)

over [B*T, V] logits (the rows of a batch of sequences), for a few (T, alpha). Run with the
project's torch virtualenv:  /work/venv-export/bin/python scripts/make-distillation-fixture.py
"""
import json
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "distillation", "kd.json")


def case(rows, vocab, temperature, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(rows, vocab, generator=g, dtype=torch.float64) * 2).float()
    teacher = (torch.randn(rows, vocab, generator=g, dtype=torch.float64) * 3).float()
    labels = torch.randint(0, vocab, (rows,), generator=g)
    s = student.double().requires_grad_(True)
    kl = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / temperature, dim=-1), F.softmax(teacher.double() / temperature, dim=-1))
    ce = F.cross_entropy(s, labels)
    loss = alpha * temperature ** 2 * kl + (1 - alpha) * ce
    loss.backward()
    return {"rows": rows, "vocab": vocab, "temperature": temperature, "alpha": alpha,
            "student": student.flatten().tolist(), "teacher": teacher.flatten().tolist(), "labels": labels.tolist(),
            "kl_batchmean": kl.item(), "cross_entropy": ce.item(), "loss": loss.item(), "grad": s.grad.flatten().tolist()}


def main():
    cases = [case(6, 7, 2.0, 0.5, 1), case(12, 33, 1.0, 0.9, 2), case(8, 300, 4.0, 0.25, 3), case(5, 11, 0.5, 1.0, 4)]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "scripts/make-distillation-fixture.py", "torch": torch.__version__, "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
