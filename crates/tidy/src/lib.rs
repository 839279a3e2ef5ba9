//! Gantry's tidy checks live in this crate's `tests/tidy.rs`: conventions that a
//! reviewer would otherwise have to remember, checked by `cargo nextest run` like any
//! other test (rust-analyzer's `xtask/src/tidy.rs` is the model). The crate has no
//! code of its own and nothing depends on it.
