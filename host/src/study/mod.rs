//! Studies built on the search and on stand-alone training: the random-search baseline, the
//! TuNAS-vs-random comparison (the paper's Table 4) and the rank check of a search's supernet
//! against stand-alone training (its Fig. 7).

pub mod compare;
pub mod random;
pub mod rank;
pub mod window;
