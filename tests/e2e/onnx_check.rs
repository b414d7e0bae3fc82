//! The ONNX builder's models against the reference tools: `onnx.checker.check_model` and
//! onnxruntime (from PyPI), driven through `scripts/check_onnx.py`.

use std::path::Path;
use std::process::Command;

use host::space::{space_names, SearchSpace};
use latency_tables::{onnx, Network, OpKey};

use tests::EVERY_KIND as KEYS;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(format!("{name}.onnx")), bytes).unwrap();
}

/// Random architectures of a space (a fixed LCG, so failures reproduce).
fn sample_archs(space: &SearchSpace, n: usize, seed: u64) -> Vec<host::space::Architecture> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            let indices = space
                .decisions
                .iter()
                .map(|d| {
                    state =
                        state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 33) as usize) % d.num_choices()
                })
                .collect();
            space.check_arch(indices).unwrap()
        })
        .collect()
}

#[test]
fn every_built_model_passes_the_onnx_checker_and_runs_in_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = 0;
    for (i, text) in KEYS.iter().enumerate() {
        let key: OpKey = text.parse().unwrap();
        write(dir.path(), &format!("op{i:02}"), &onnx::op_bytes(&key, i as u64).unwrap());
        written += 1;
    }
    for name in space_names() {
        let space = SearchSpace::by_name(name).unwrap();
        let mut archs: Vec<_> = host::space::reference_architectures(name)
            .iter()
            .map(|r| space.parse_arch(r.indices).unwrap())
            .collect();
        archs.extend(sample_archs(&space, 2, 7));
        for (j, arch) in archs.iter().enumerate() {
            let net: Network = space.resolve(arch, 224).network;
            write(dir.path(), &format!("net-{name}-{j}"), &onnx::network_bytes(&net, 1).unwrap());
            written += 1;
        }
    }
    let script = tests::workspace_root().join("scripts/check_onnx.py");
    let out = Command::new(tests::python()).arg(&script).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_onnx.py failed (is `pip install onnx onnxruntime numpy` done?)\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["ok"] == true)
        .count();
    assert_eq!(ok, written, "{stdout}");
}

#[test]
fn the_checker_script_fails_on_a_broken_model() {
    // A guard that the check above can fail: a model with a dangling input is rejected.
    let dir = tempfile::tempdir().unwrap();
    let key: OpKey = "head/7x7x8/o16/relu".parse().unwrap();
    let mut model = onnx::op_model(&key, &mut onnx::SeededWeights::new(0)).unwrap();
    model.graph.as_mut().unwrap().node[0].input[1] = "no_such_tensor".into();
    write(dir.path(), "broken", &onnx::encode(&model));
    let script = tests::workspace_root().join("scripts/check_onnx.py");
    let out = Command::new(tests::python()).arg(&script).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\": false"));
}
