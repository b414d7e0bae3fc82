//! The TuNAS search loop (tunas-spec §0): per step, draw K architectures α from the controller
//! (with op and filter warmup), price each with the latency model at deployment geometry, train
//! the supernet on a training batch with the first, measure every Q(α) on one validation batch
//! 4× larger (forward only), and update the controller with the mean REINFORCE gradient of the
//! rewards `Q + β·|T(α)/T0 − 1|` (or `mnas`, `mnas-hard`).
//!
//! A run lives in a directory: `config.json`, `steps.jsonl`, `checkpoint/` (weights, optimiser
//! slots, controller, step), `final.json` and SVG plots. Every random draw is a pure function of
//! (seed, step, purpose), so a resumed run replays exactly what an uninterrupted one does.

pub mod controller;
mod report;
mod run;
mod verify;

pub use controller::{
    decision_infos, one_hot_selection, rl_learning_rate, warmup_probability, Baseline, Controller,
    DecisionInfo, Draw, RewardKind, Update,
};
pub use report::{FinalReport, LayerKey, PolicySummary};
pub use run::{
    default_lr, default_rl_lr, delay_steps, evaluate_one_shot, read_steps, resume, start,
    Interrupt, Outcome, RunDir, SearchConfig, SearchSetup, SlopeStats, StepRecord, Stop,
    DEPLOYMENT_RESOLUTION, EXPECTED_EVERY, QUICK_MIN_DELAY, QUICK_STEPS, RL_LOGIT_BUDGET,
};
pub use verify::{verify, Verification};
