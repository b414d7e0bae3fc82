//! `tunas profile --budget N`: N keys measured (the agent's real protocol server, fake engine,
//! in-memory link), the rest predicted and marked, a sample of the predictions checked, and a
//! later resume without a budget that measures what was predicted.

use std::sync::Arc;
use std::time::Duration;

use device_agent::engine::FakeEngine;
use device_agent::measure::Placement;
use host::device::memory::MemoryLink;
use host::device::Link;
use host::profile::{check_predicted, predict_rest, profile, ProfileOptions};
use host::space::SearchSpace;
use host::tables::predict::choose;
use latency_tables::{Fingerprint, LatencyTable, Method, OpKey};

fn agent() -> Arc<dyn Link> {
    Arc::new(MemoryLink::new("budget", |_, input, output| {
        let engine = FakeEngine { ns_per_byte: 0.02, fail_modulo: 0 };
        let placement = Placement { cpus: vec![], thermal_limit_c: 1000.0 };
        let _ =
            device_agent::serve::serve(&engine, &Fingerprint::default(), &placement, input, output);
    }))
}

fn options(resume: bool) -> ProfileOptions {
    let method = Method { runs: 2, passes: 1, canary_every: 0, ..Method::instant() };
    ProfileOptions {
        method,
        resume,
        allow_mixed: false,
        key_timeout: Duration::from_secs(10),
        max_attempts: 3,
        max_restarts: 3,
        group: 8,
        progress: false,
    }
}

#[test]
fn a_budget_measures_some_keys_predicts_the_rest_and_a_resume_measures_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    let plan: Vec<OpKey> =
        SearchSpace::by_name("proxylessnas").unwrap().plan(224).into_iter().collect();
    let chosen = choose(&plan, 40);
    assert!(chosen.len() < plan.len());
    let links = [agent()];
    profile(&chosen, &links, &out, &options(false)).unwrap();
    let fit = predict_rest(&out, &plan).unwrap();
    let table = LatencyTable::load(&out).unwrap();
    assert_eq!(table.len(), plan.len(), "every key of the plan has an entry");
    assert_eq!(table.predicted_len(), plan.len() - chosen.len());
    assert!(table.entries().filter(|e| !e.measured()).all(|e| e.n == 0 && e.median > 0.0));
    let ib = fit.kinds.iter().find(|k| k.kind == "ib").unwrap();
    assert_eq!(
        ib.measured + ib.predicted,
        plan.iter().filter(|k| k.to_string().starts_with("ib/")).count()
    );
    assert!(ib.rmspe.is_finite());
    assert_eq!(table.prediction.as_ref(), Some(&fit));

    let check = check_predicted(&out, 5, &links, &options(false)).unwrap();
    assert_eq!(check.keys, 5);
    assert!(check.median_abs_error.is_finite() && check.table.exists());

    // Later, without a budget: the journal continues and the predicted keys are measured.
    profile(&plan, &links, &out, &options(true)).unwrap();
    let full = LatencyTable::load(&out).unwrap();
    assert_eq!((full.len(), full.predicted_len()), (plan.len(), 0));
    for k in &chosen {
        assert_eq!(
            full.get(k).unwrap().median,
            table.get(k).unwrap().median,
            "kept, not re-measured"
        );
    }
}
