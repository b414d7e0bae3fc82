//! tract (through `device-agent infer`) and onnxruntime compute the same outputs for every op
//! kind and for whole reference networks, within 1e-4 relative to the output's magnitude.

use std::path::Path;
use std::process::Command;

use host::space::SearchSpace;
use latency_tables::onnx::{self, SeededWeights};
use latency_tables::{Network, OpKey};

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

fn save(dir: &Path, name: &str, net: &Network, seed: u64) {
    let model = onnx::network_model(net, &mut SeededWeights::new(seed)).unwrap();
    std::fs::write(dir.join(format!("{name}.onnx")), onnx::encode(&model)).unwrap();
    let (h, w, c) = net.input_shape().unwrap();
    let input = SeededWeights::new(seed + 1000).uniform((h * w * c) as usize, 1.0);
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{name}.input.bin")), bytes).unwrap();
}

#[test]
fn tract_agrees_with_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for (i, text) in KEYS.iter().enumerate() {
        let key: OpKey = text.parse().unwrap();
        let name = format!("op{i:02}");
        save(dir.path(), &name, &Network::new(vec![key]), i as u64);
        names.push(name);
    }
    for (space, arch) in
        [("proxylessnas", "proxylessnas-mobile"), ("proxylessnas-enlarged", "mnasnet-b1")]
    {
        let s = SearchSpace::by_name(space).unwrap();
        let net = s.resolve(&s.parse_arch(arch).unwrap(), 224).network;
        let name = format!("net-{space}-{arch}");
        save(dir.path(), &name, &net, 11);
        names.push(name);
    }
    let v3 = SearchSpace::by_name("mobilenet-v3-like").unwrap();
    let max = v3.check_arch(v3.decisions.iter().map(|d| d.num_choices() - 1).collect()).unwrap();
    save(dir.path(), "net-v3-max", &v3.resolve(&max, 224).network, 12);
    names.push("net-v3-max".into());

    let script = tests::workspace_root().join("scripts/check_onnx.py");
    let o = Command::new(tests::python())
        .arg(&script)
        .arg(dir.path())
        .arg("--save-outputs")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for name in &names {
        let model = dir.path().join(format!("{name}.onnx"));
        let tract_out = dir.path().join(format!("{name}.tract.bin"));
        let o = tests::command("device-agent")
            .arg("infer")
            .arg(&model)
            .arg("--input")
            .arg(dir.path().join(format!("{name}.input.bin")))
            .arg("--output")
            .arg(&tract_out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let t = read_f32(&tract_out);
        let r = read_f32(&dir.path().join(format!("{name}.ort.bin")));
        let err = relative_error(&t, &r);
        eprintln!("{name}: tract vs onnxruntime relative error {err:.2e}");
        assert!(err <= 1e-4, "{name}: tract and onnxruntime differ by {err:e} (relative)");
    }
}

#[test]
fn the_comparison_detects_a_disagreement() {
    let a = [1.0f32, -2.0, 3.0];
    assert_eq!(relative_error(&a, &a), 0.0);
    assert!(relative_error(&[1.0, -2.0, 3.001], &a) > 1e-4);
}
