//! tract (through `device-agent infer`) and onnxruntime compute the same outputs for every op
//! kind and for whole reference networks: float models within 1e-4 relative to the output's
//! magnitude; int8 models within their quantisation tolerance (op models: uint8 outputs at most
//! 2 steps apart, 99% of values within 1; networks: logits within 3% of their magnitude).

use std::path::Path;
use std::process::Command;

use host::space::SearchSpace;
use latency_tables::onnx::{self, SeededWeights};
use latency_tables::{Network, OpKey, Precision};

use tests::EVERY_KIND as KEYS;

fn read_f32(path: &Path) -> Vec<f32> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Largest |a − b| relative to the largest |b| (the reference's scale).
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "output sizes differ");
    let scale = b.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))).max(1e-12);
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max(f64::from((x - y).abs()))) / scale
}

/// Saves `net` (`op`: as an op model, whose int8 form takes uint8 input) and a seeded input.
fn save(dir: &Path, name: &str, net: &Network, seed: u64, op: bool) {
    let model = if op {
        onnx::op_model(&net.layers[0], &mut SeededWeights::new(seed)).unwrap()
    } else {
        onnx::network_model(net, &mut SeededWeights::new(seed)).unwrap()
    };
    std::fs::write(dir.join(format!("{name}.onnx")), onnx::encode(&model)).unwrap();
    let (h, w, c) = net.input_shape().unwrap();
    let mut input = SeededWeights::new(seed + 1000).uniform((h * w * c) as usize, 1.0);
    if op && net.precision() == Precision::I8 {
        // uint8 values, written as f32 like every input file.
        input.iter_mut().for_each(|v| *v = ((*v + 1.0) * 127.5).floor().clamp(0.0, 255.0));
    }
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{name}.input.bin")), bytes).unwrap();
}

/// Every op kind, and whole reference networks, in `precision`: writes them to `dir`, checks
/// them with onnxruntime, runs them in tract; returns (name, tract output, onnxruntime output).
fn run_both(dir: &Path, precision: Precision) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    let mut names = Vec::new();
    for (i, text) in KEYS.iter().enumerate() {
        let key = text.parse::<OpKey>().unwrap().with_precision(precision);
        let name = format!("op{i:02}");
        save(dir, &name, &Network::new(vec![key]), i as u64, true);
        names.push(name);
    }
    for (space, arch) in
        [("proxylessnas", "proxylessnas-mobile"), ("proxylessnas-enlarged", "mnasnet-b1")]
    {
        let s = SearchSpace::by_name(space).unwrap();
        let net = s.resolve(&s.parse_arch(arch).unwrap(), 224).network.with_precision(precision);
        let name = format!("net-{space}-{arch}");
        save(dir, &name, &net, 11, false);
        names.push(name);
    }
    let v3 = SearchSpace::by_name("mobilenet-v3-like").unwrap();
    let max = v3.check_arch(v3.decisions.iter().map(|d| d.num_choices() - 1).collect()).unwrap();
    save(dir, "net-v3-max", &v3.resolve(&max, 224).network.with_precision(precision), 12, false);
    names.push("net-v3-max".into());

    let script = tests::workspace_root().join("scripts/check_onnx.py");
    let o =
        Command::new(tests::python()).arg(&script).arg(dir).arg("--save-outputs").output().unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut outputs = Vec::new();
    for name in names {
        let model = dir.join(format!("{name}.onnx"));
        let tract_out = dir.join(format!("{name}.tract.bin"));
        let o = tests::command("device-agent")
            .arg("infer")
            .arg(&model)
            .arg("--input")
            .arg(dir.join(format!("{name}.input.bin")))
            .arg("--output")
            .arg(&tract_out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let t = read_f32(&tract_out);
        let r = read_f32(&dir.join(format!("{name}.ort.bin")));
        outputs.push((name, t, r));
    }
    outputs
}

#[test]
fn tract_agrees_with_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    for (name, t, r) in run_both(dir.path(), Precision::F32) {
        let err = relative_error(&t, &r);
        eprintln!("{name}: tract vs onnxruntime relative error {err:.2e}");
        assert!(err <= 1e-4, "{name}: tract and onnxruntime differ by {err:e} (relative)");
    }
}

/// Steps between two uint8 outputs (as f32): the largest, and the share of values within 1.
pub fn step_error(a: &[f32], b: &[f32]) -> (f32, f64) {
    assert_eq!(a.len(), b.len(), "output sizes differ");
    let largest = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let close = a.iter().zip(b).filter(|(x, y)| (*x - *y).abs() <= 1.0).count();
    (largest, close as f64 / a.len().max(1) as f64)
}

#[test]
fn tract_agrees_with_onnxruntime_in_int8() {
    let dir = tempfile::tempdir().unwrap();
    for (name, t, r) in run_both(dir.path(), Precision::I8) {
        if name.starts_with("net") || name == format!("op{:02}", KEYS.len() - 1) {
            // Float logits (the classifier dequantises).
            let err = relative_error(&t, &r);
            eprintln!("{name} (int8): tract vs onnxruntime relative error {err:.2e}");
            assert!(err <= 0.03, "{name}: int8 tract and onnxruntime differ by {err:e}");
        } else {
            let (largest, within_one) = step_error(&t, &r);
            eprintln!("{name} (int8): largest {largest} steps, {within_one:.4} within 1 step");
            assert!(
                largest <= 2.0 && within_one >= 0.99,
                "{name}: int8 tract and onnxruntime differ by up to {largest} steps \
                 ({within_one:.4} of values within 1)"
            );
        }
    }
}

#[test]
fn the_comparison_detects_a_disagreement() {
    let a = [1.0f32, -2.0, 3.0];
    assert_eq!(relative_error(&a, &a), 0.0);
    assert!(relative_error(&[1.0, -2.0, 3.001], &a) > 1e-4);
    assert_eq!(step_error(&a, &a), (0.0, 1.0));
    let (largest, within) = step_error(&[1.0, -2.0, 6.0], &a);
    assert_eq!(largest, 3.0);
    assert!((within - 2.0 / 3.0).abs() < 1e-12);
}
