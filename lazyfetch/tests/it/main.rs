//! Integration tests against a real Garage S3 store (and a real Redis for the cross-node lock).
//! Each test starts its own servers (`stack`, the launcher), so tests can stop them freely.
//! Needs `garage` (`cargo install garage --locked`) and `redis-server`.

mod support;

mod cli;
mod cross_node;
mod faults;
mod fetch;
mod prune;
