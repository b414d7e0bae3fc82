#!/usr/bin/env python3
"""Check an exported network (`tunas export`) with the ONNX checker and onnxruntime.

Reads MODEL.json (written by `tunas export` next to MODEL.onnx): runs onnxruntime (CPU) on the
check images it names, one at a time (the model has batch 1), and compares with Candle's logits.
Passes when max |ort - candle| <= --tolerance (1e-3) x max(1, max |candle logit|) -- an absolute
1e-3 for logits of ordinary size, relative to the logits' size when an under-trained network
gives huge ones (f32 rounding grows with them) -- and the top-1 class is the same for every image.

An int8 export (`"precision": "i8"` in the report) is compared with tract's logits of the same
int8 model (`MODEL.check/tract.f32`, written by `tunas export`), not with Candle's float ones:
the top-1 class must be the same for every image and the logits within --int8-tolerance (3%) of
their scale (both engines run the same integer graph; requantisation may round differently).
The report gives both engines' top-1 accuracy on the labels.
Prints one JSON line; exits 1 on failure.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="MODEL.onnx written by `tunas export`")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--int8-tolerance", type=float, default=0.03)
    args = ap.parse_args()
    path = pathlib.Path(args.model)
    report = json.loads(path.with_suffix(".json").read_text())
    check = report["check"]
    n = check["images"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.fromfile(check["input"], dtype="<f4").reshape([n] + shape[1:])
    int8 = check.get("precision", "f32") == "i8"
    if int8:
        reference = np.fromfile(path.with_suffix(".check") / "tract.f32", dtype="<f4").reshape(n, -1)
        tolerance = args.int8_tolerance
    else:
        reference = np.fromfile(check["candle_logits"], dtype="<f4").reshape(n, -1)
        tolerance = args.tolerance
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = model.graph.input[0].name
    out = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(n)])
    max_abs = float(np.abs(out - reference).max())
    differ = int((out.argmax(1) != reference.argmax(1)).sum())
    scale = max(1.0, float(np.abs(reference).max()))
    ok = max_abs <= tolerance * scale and differ == 0
    labels = np.array(check["labels"])
    print(json.dumps({"model": str(path), "precision": "i8" if int8 else "f32",
                      "reference": "tract" if int8 else "candle", "images": n,
                      "max_abs_diff": max_abs, "logit_scale": scale, "top1_differs": differ,
                      "accuracy": float((out.argmax(1) == labels).mean()),
                      "reference_accuracy": float((reference.argmax(1) == labels).mean()),
                      "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
