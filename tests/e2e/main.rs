//! End-to-end tests across crates (one test binary, ripgrep style).
#![allow(clippy::unwrap_used)]

// Every model the ONNX builder makes passes the ONNX checker and runs in onnxruntime.
mod onnx_check;
