//! `tunas verify`: a finished search's architecture measured whole on a device (the agent's real
//! protocol server with the fake engine, behind the in-memory link) against its prediction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use device_agent::engine::FakeEngine;
use device_agent::measure::Placement;
use host::device::memory::MemoryLink;
use host::search::{verify, FinalReport, SearchConfig};
use latency_tables::{Fingerprint, Method};

fn agent(sessions: Arc<AtomicUsize>) -> MemoryLink {
    MemoryLink::new("verify", move |_, input, output| {
        sessions.fetch_add(1, Ordering::SeqCst);
        let engine = FakeEngine { ns_per_byte: 0.001, fail_modulo: 0 };
        let placement = Placement { cpus: vec![], thermal_limit_c: 1000.0 };
        let _ =
            device_agent::serve::serve(&engine, &Fingerprint::default(), &placement, input, output);
    })
}

fn quick() -> Method {
    Method { passes: 1, ..Method::instant() }
}

#[test]
fn a_found_network_is_measured_whole_and_compared_with_its_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    let link = agent(Arc::default());
    let timeout = Duration::from_secs(30);
    let err = verify(run, &link, &quick(), timeout).unwrap_err();
    assert!(format!("{err:#}").contains("config.json"), "{err:#}");
    let cfg = SearchConfig::quick();
    std::fs::write(run.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let err = verify(run, &link, &quick(), timeout).unwrap_err();
    assert!(format!("{err:#}").contains("is the search finished?"), "{err:#}");

    // proxylessnas-mobile: 84.416 ms by the Pixel 1 model.
    let report = FinalReport {
        space: "proxylessnas".into(),
        indices: "proxylessnas-mobile".into(),
        architecture: serde_json::Value::Null,
        layers: vec![],
        latency_model: "pixel1".into(),
        latency_ms: 84.416,
        target_ms: 84.0,
        latency_error: 84.416 / 84.0 - 1.0,
        one_shot_validation_accuracy: 0.5,
        validation_images: 2000,
        steps: 1000,
        rl_archs: 4,
        policy: None,
        q_slope_ln_t: None,
        logits: vec![],
    };
    report.save(run).unwrap();
    let sessions = Arc::new(AtomicUsize::new(0));
    let v = verify(run, &agent(sessions.clone()), &quick(), timeout).unwrap();
    assert_eq!(sessions.load(Ordering::SeqCst), 1);
    assert!((v.predicted_ms - 84.416).abs() < 1e-3, "{}", v.predicted_ms);
    assert!(v.measured_ms > 0.0 && v.error.is_finite());
    assert!((v.error - (v.predicted_ms / v.measured_ms - 1.0)).abs() < 1e-12);
    assert_eq!(v.resolution, 224);
    assert!(v.fingerprint.is_some());
    let written: host::search::Verification =
        serde_json::from_str(&std::fs::read_to_string(run.join("verify.json")).unwrap()).unwrap();
    assert_eq!(written, v);

    // Again: the measurement comes from the run's journal, the device is not asked.
    let again = Arc::new(AtomicUsize::new(0));
    let w = verify(run, &agent(again.clone()), &quick(), timeout).unwrap();
    assert_eq!(again.load(Ordering::SeqCst), 0);
    assert_eq!(w.measured_ms, v.measured_ms);
}
