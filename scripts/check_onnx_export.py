#!/usr/bin/env python3
"""Checks a `zerotrain export --format onnx` model with onnx.checker and onnxruntime against ZeroTrain's logits.

    python3 scripts/check_onnx_export.py MODEL_ONNX TOKENS_FILE ZT_LOGITS_FILE [--tolerance 1e-4]

MODEL_ONNX      model.onnx written by `zerotrain export --format onnx` (external data beside it is found).
TOKENS_FILE     safetensors with `tokens` int32 [B, T+1]; the inputs are tokens[:, :T].
ZT_LOGITS_FILE  safetensors with `logits` [B, T, V] from `zerotrain grads` on the same tokens.

Without a KV cache in the model: one run on the T tokens. With one (past_key_values.N.key/value inputs):
the T tokens with empty past (past_sequence_length 0); then the first T//2 tokens with empty past and the
remaining tokens one at a time, each fed the previous run's present.N.key/value as past, every step's
logits compared with ZeroTrain's full-forward logits at that position. Passes when every
max |logits_onnx - logits_zt| <= tolerance (absolute, default 1e-4). Needs numpy, onnx and onnxruntime
(no torch). Prints one line per check; exit code 0 on a match, 1 on a mismatch, 2 on a model onnx rejects.
"""
import argparse
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    types = {"F32": np.float32, "I32": np.int32, "I64": np.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=types[info["dtype"]]).reshape(info["shape"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("tokens_file")
    parser.add_argument("zt_logits_file")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(args.model, full_check=True)
    except Exception as e:  # noqa: BLE001 - report any rejection
        print(f"onnx.checker rejects {args.model}: {e}")
        return 2
    model = onnx.load(args.model, load_external_data=False)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    ops = sorted({n.op_type for n in model.graph.node})
    print(f"onnx.checker: ok (ir {model.ir_version}, opset {opset}, {len(model.graph.node)} nodes, ops {' '.join(ops)})")

    tokens = read_safetensors(args.tokens_file)["tokens"].astype(np.int64)
    ids = tokens[:, :-1]
    expected = read_safetensors(args.zt_logits_file)["logits"]
    bound = args.tolerance
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    past_names = [n for n in inputs if n.startswith("past_key_values.")]
    outputs = [o.name for o in session.get_outputs()]
    ok = True

    def empty_past(batch):
        feed = {}
        for name in past_names:
            shape = inputs[name].shape
            feed[name] = np.zeros((batch, shape[1], 0, shape[3]), dtype=np.float32)
        return feed

    def check(label, got, want):
        nonlocal ok
        worst = float(np.abs(got - want).max())
        good = worst <= bound
        ok = ok and good
        print(f"{label}: max |onnx - zerotrain| = {worst:.3g} (bound {bound:.3g}) {'ok' if good else 'MISMATCH'}")

    batch, length = ids.shape
    result = session.run(outputs, {"input_ids": ids, **empty_past(batch)})
    check(f"full forward ({batch}x{length}{', empty past' if past_names else ''})", result[0], expected)
    if past_names:
        prefix = length // 2
        result = dict(zip(outputs, session.run(outputs, {"input_ids": ids[:, :prefix], **empty_past(batch)})))
        worst_step = 0.0
        steps = [(prefix, result["logits"], expected[:, :prefix])]
        for t in range(prefix, length):
            feed = {"input_ids": ids[:, t:t + 1]}
            for name in past_names:
                feed[name] = result[name.replace("past_key_values.", "present.")]
            result = dict(zip(outputs, session.run(outputs, feed)))
            steps.append((t, result["logits"], expected[:, t:t + 1]))
            assert result["present.0.key"].shape[2] == t + 1
        worst_step = max(float(np.abs(got - want).max()) for _, got, want in steps)
        good = worst_step <= bound
        ok = ok and good
        print(f"with the KV cache (prefix {prefix}, then {length - prefix} single tokens fed past=present): "
              f"max |onnx - zerotrain| = {worst_step:.3g} (bound {bound:.3g}) {'ok' if good else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
