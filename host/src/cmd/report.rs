//! `tunas report`.
