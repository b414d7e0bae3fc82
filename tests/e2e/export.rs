//! `tunas export`: a trained network as ONNX gives Candle's logits in tract (through the device
//! agent, checked by `tunas export` itself) and in onnxruntime (`scripts/check_export.py`).

use std::process::Command;

fn run(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Trains `arch` of `space` for `steps` steps at batch 16 and width ×0.25 into `dir`.
fn train(dir: &std::path::Path, space: &str, arch: &str, steps: &str) {
    let (ok, _, err) = run(tests::command("tunas").args([
        "train",
        "--space",
        space,
        "--arch",
        arch,
        "--steps",
        steps,
        "--batch-size",
        "16",
        "--width-multiplier",
        "0.25",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
}

/// The largest MobileNetV3-Like architecture: SE and h-swish everywhere they can be.
const V3_MAX: &str = "1:2:0:3:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:3:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:5:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:6:6";

#[test]
fn an_exported_network_gives_candles_logits_in_tract_and_onnxruntime() {
    let tmp = tempfile::tempdir().unwrap();
    let train_dir = tmp.path().join("train");
    for space in ["proxylessnas", "mobilenet-v3-like"] {
        let dir = train_dir.join(space);
        train(
            &dir,
            space,
            if space == "proxylessnas" { "proxylessnas-mobile" } else { V3_MAX },
            "6",
        );
        let model = tmp.path().join(format!("{space}.onnx"));
        let (ok, out, err) = run(tests::command("tunas").args([
            "export",
            "--run",
            dir.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ]));
        assert!(ok, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["key_mismatches"].as_array().unwrap().len(), 0, "{report}");
        let tract = &report["check"]["tract"];
        let scale = tract["logit_scale"].as_f64().unwrap();
        assert!(tract["max_abs_diff"].as_f64().unwrap() <= 1e-3 * scale, "{tract}");
        assert_eq!(tract["top1_differs"], 0);
        assert_eq!(report["check"]["images"], 100);

        let script = tests::workspace_root().join("scripts/check_export.py");
        let (ok, out, err) = run(Command::new(tests::python()).arg(&script).arg(&model));
        assert!(ok, "{out}\n{err}");
        let ort: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(ort["max_abs_diff"].as_f64().unwrap() <= 1e-3 * scale, "{ort}");

        // The check can fail: one of Candle's logits moved by 2e-3 × the logits' scale is caught.
        let candle = model.with_extension("check").join("candle.f32");
        let mut bytes = std::fs::read(&candle).unwrap();
        let v =
            f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) + (2e-3 * scale) as f32;
        bytes[..4].copy_from_slice(&v.to_le_bytes());
        std::fs::write(&candle, bytes).unwrap();
        let (ok, out, _) = run(Command::new(tests::python()).arg(&script).arg(&model));
        assert!(!ok, "a 0.01 difference passed: {out}");
    }
}

#[test]
fn an_int8_export_is_calibrated_and_gives_the_same_top1_in_tract_and_onnxruntime() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("train");
    train(&dir, "proxylessnas", "proxylessnas-mobile", "40");
    let model = tmp.path().join("i8.onnx");
    let (ok, out, err) = run(tests::command("tunas").args([
        "export",
        "--run",
        dir.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--precision",
        "i8",
        "--calibration-images",
        "64",
    ]));
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["check"]["precision"], "i8");
    assert_eq!(report["check"]["calibration_images"], 64);
    assert!(report["exported_keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k.as_str().unwrap().ends_with("/i8")));
    assert_eq!(report["key_mismatches"].as_array().unwrap().len(), 0, "{report}");
    let tract = &report["check"]["tract"];
    // Calibrated int8 stays near the float network: within 10 points of its accuracy.
    let (acc, float) =
        (tract["accuracy"].as_f64().unwrap(), report["check"]["candle_accuracy"].as_f64().unwrap());
    assert!(acc >= float - 0.10, "int8 accuracy {acc} against float {float}");

    let script = tests::workspace_root().join("scripts/check_export.py");
    let (ok, out, err) = run(Command::new(tests::python()).arg(&script).arg(&model));
    assert!(ok, "{out}\n{err}");
    let ort: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((ort["reference"].as_str(), ort["top1_differs"].as_u64()), (Some("tract"), Some(0)));

    // The check can fail: tract's logits moved by a tenth of their scale are caught.
    let tract_logits = model.with_extension("check").join("tract.f32");
    let mut bytes = std::fs::read(&tract_logits).unwrap();
    let scale = ort["logit_scale"].as_f64().unwrap() as f32;
    let v = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) + 0.1 * scale;
    bytes[..4].copy_from_slice(&v.to_le_bytes());
    std::fs::write(&tract_logits, bytes).unwrap();
    let (ok, out, _) = run(Command::new(tests::python()).arg(&script).arg(&model));
    assert!(!ok, "a 10% difference passed: {out}");
}
