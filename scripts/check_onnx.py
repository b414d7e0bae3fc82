#!/usr/bin/env python3
"""Check every ONNX model in a folder with the ONNX checker and onnxruntime.

For each MODEL.onnx: onnx.checker.check_model(full_check=True) (strict shape inference too),
then a run in onnxruntime (CPU) on MODEL.input.bin when present (raw little-endian f32 of the
declared input shape, cast to the declared input type: uint8 for int8 op models) or on a seeded
random input. The output must have the declared shape
and be finite and not all zeros. With --save-outputs the output is written to MODEL.ort.bin
(raw little-endian f32) so another engine can be compared against it.

Prints one JSON line per model and a summary line "checked N models"; exits 1 on any failure.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort


def dims(value_info):
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--save-outputs", action="store_true")
    args = ap.parse_args()
    folder = pathlib.Path(args.folder)
    models = sorted(folder.glob("*.onnx"))
    if not models:
        print(f"no .onnx files in {folder}", file=sys.stderr)
        return 1
    failures = 0
    for path in models:
        result = {"model": path.name}
        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
            in_shape = dims(model.graph.input[0])
            out_shape = dims(model.graph.output[0])
            input_file = path.with_suffix(".input.bin")
            in_type = onnx.helper.tensor_dtype_to_np_dtype(
                model.graph.input[0].type.tensor_type.elem_type)
            if input_file.exists():
                x = np.fromfile(input_file, dtype="<f4").reshape(in_shape)
            elif in_type == np.uint8:
                x = np.random.default_rng(0).integers(0, 256, in_shape).astype(np.float32)
            else:
                x = np.random.default_rng(0).uniform(-1, 1, in_shape).astype(np.float32)
            x = x.astype(in_type)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            (y,) = sess.run(None, {model.graph.input[0].name: x})
            if list(y.shape) != out_shape:
                raise ValueError(f"output shape {list(y.shape)} != declared {out_shape}")
            if not np.all(np.isfinite(y)):
                raise ValueError("output has NaN or infinity")
            if not np.any(y != 0):
                raise ValueError("output is all zeros")
            if args.save_outputs:
                y.astype("<f4").tofile(path.with_suffix(".ort.bin"))  # uint8 outputs as f32
            result.update(ok=True, opset=model.opset_import[0].version, nodes=len(model.graph.node),
                          output_shape=out_shape, output_abs_mean=float(np.abs(y).mean()))
        except Exception as exc:  # report every model, then fail
            failures += 1
            result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        print(json.dumps(result), flush=True)
    print(f"checked {len(models)} models, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
