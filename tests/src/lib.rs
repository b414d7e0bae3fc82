//! Helpers shared by the end-to-end tests: paths of the workspace and of the built binaries.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// A built binary of the workspace (`tunas`, `device-agent`), next to the test executable's
/// target directory. Panics with a clear message when it has not been built.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/e2e-xxxx → target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).map(PathBuf::from).unwrap_or_default();
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built (run `cargo build --workspace` first)", path.display());
    path
}

/// A `Command` for a workspace binary.
pub fn command(name: &str) -> Command {
    Command::new(binary(name))
}

/// The Python interpreter used for the onnx/onnxruntime checks (`PYTHON` or `python3`).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// One op key of every kind and variant: residual, SE, h-swish, stride 2 on even and odd sizes.
pub const EVERY_KIND: &[&str] = &[
    "stem/224x224x3/o32/k3/s2/relu",
    "stem/224x224x3/o16/k5/s2/hswish",
    "sep/112x112x32/o16/k3/s1/relu",
    "sep/112x112x16/o16/k7/s1/relu/res",
    "ib/112x112x16/o32/k5/s2/e48/se0/relu",
    "ib/56x56x32/o32/k7/s1/e192/se0/relu/res",
    "ib/28x28x40/o80/k3/s2/e240/se64/hswish",
    "ib/7x7x160/o160/k5/s1/e960/se240/hswish/res",
    "ib/15x15x24/o24/k3/s2/e72/se24/relu",
    "head/7x7x320/o1280/relu",
    "head/1x1x1024/o2048/hswish",
    "pool/7x7x1280",
    "fc/1x1x1280/o1001",
];
