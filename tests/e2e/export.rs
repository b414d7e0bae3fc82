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

/// The largest MobileNetV3-Like architecture: SE and h-swish everywhere they can be.
const V3_MAX: &str = "1:2:0:3:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:3:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:5:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:2:5:1:2:5:1:0:2:5:1:0:2:5:1:0:6:6:6";

#[test]
fn an_exported_network_gives_candles_logits_in_tract_and_onnxruntime() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train");
    for space in ["proxylessnas", "mobilenet-v3-like"] {
        let dir = train.join(space);
        let (ok, _, err) = run(tests::command("tunas").args([
            "train",
            "--space",
            space,
            "--arch",
            if space == "proxylessnas" { "proxylessnas-mobile" } else { V3_MAX },
            "--steps",
            "6",
            "--batch-size",
            "16",
            "--width-multiplier",
            "0.25",
            "--out",
            dir.to_str().unwrap(),
        ]));
        assert!(ok, "{err}");
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
