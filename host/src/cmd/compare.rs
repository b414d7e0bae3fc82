//! `tunas compare`.
