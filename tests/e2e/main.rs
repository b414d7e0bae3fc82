//! End-to-end tests across crates (one test binary, ripgrep style).
#![allow(clippy::unwrap_used)]

// Every model the ONNX builder makes passes the ONNX checker and runs in onnxruntime.
mod onnx_check;

// tract (the agent's engine) and onnxruntime agree on every op kind and whole networks.
mod tract_vs_ort;

// `tunas export`: trained network → ONNX → same logits in tract and onnxruntime as in Candle.
mod export;

// The profiling driver against the agent's real protocol server (fake engine) on a thread,
// behind the in-memory link, with faults injected: in-process and deterministic.
mod faults;

// `tunas profile` over local, exec, serial (pty) and TCP links, with faults injected (the thin
// smoke layer over real binaries and transports).
mod profile;

// `tunas verify`: a search's architecture measured whole against its prediction, in-process.
mod verify;

// `tunas profile --budget`: measured keys, predicted keys, a check, and a resume that measures
// the predicted ones, in-process.
mod budget;
