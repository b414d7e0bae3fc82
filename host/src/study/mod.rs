//! Studies built on the search and on stand-alone training: the random-search baseline, the
//! TuNAS-vs-random comparison (the paper's Table 4) and the rank check of a search's supernet
//! against stand-alone training (its Fig. 7).

pub mod compare;
pub mod random;
pub mod rank;
pub mod window;

use crate::search::SearchConfig;
use crate::train::TrainConfig;

/// The stand-alone training defaults, trained like the search `search` (its space, latency
/// model, data and held-out split, width, batch size and weight learning rate): how the
/// search's result and its rivals are trained (`tunas compare`, `tunas rank-check`).
pub fn train_like(search: &SearchConfig) -> TrainConfig {
    TrainConfig {
        latency: search.latency.clone(),
        data: search.data.clone(),
        validation_size: search.validation_size,
        width_multiplier: search.width_multiplier,
        batch_size: search.batch_size,
        lr: search.lr,
        device: search.device,
        ..TrainConfig::new(&search.space, "")
    }
}
