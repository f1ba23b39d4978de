//! Admission control for the iipsrv pool: what a request will cost, which lane it waits in,
//! who gets the next free process, and whether a request may wait at all.
//!
//! Behind one first-come-first-served queue, a 256-px tile waits behind every huge render that
//! arrived before it, so under load every request is as slow as the slowest (the design
//! report's benchmark: iipsrv's tile median was 720 ms at 100 connections, 8.6 s at 1,000).
//! Here every request is costed before it runs and waits in one of two lanes:
//!
//! - **small**: tiles, thumbnails, info.json and moderate renders; served first;
//! - **large**: everything that makes iipsrv decode or write many pixels; it may hold at most
//!   `large_max_slots` processes at once, so a cheap request always finds a process soon.
//!
//! Each lane has a bounded queue and a longest wait. A request that would wait longer (by the
//! lane's recent service time) or finds its queue full is refused at once with 503 and
//! `Retry-After` instead of after a long wait; one that does wait past its deadline is refused
//! then.
//!
//! # Layout (bottom-up: `policy`, then `cost`, which names `policy::Lane`, then this module)
//!
//! - [`policy`]: the lanes, their queue bounds and waits, who goes next and why a request is
//!   refused ([`Rejection`]). It knows nothing about IIIF; it is the only part the FastCGI pool
//!   (`fcgi`) uses.
//! - [`cost`]: what a request costs, from its IIIF plan, and the thresholds that put it in a
//!   lane. `fcgi` never imports it: the gateway (`backend.rs`) passes the pool only the lane.
//! - here: the `gateway.admission` section as written ([`RawAdmission`]), resolved into both.
//!
//! **Invariant:** all of it is pure: no clock, no I/O, no locks. The pool's scheduler
//! (`fcgi::scheduler`) holds the queues and asks [`policy`], passing the times it measured, so
//! every rule can be tested exhaustively.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod cost;
pub mod policy;

pub use cost::{tile_size, Cost, CostThresholds, DEFAULT_TILE};
pub use policy::{AdmissionConfig, Lane, LaneLimits, RawLane, RejectReason, Rejection};

use policy::RawLanes;

/// `gateway.admission` as written in the file; every key is optional.
///
/// One flat section in YAML, resolved into two parts: the cost thresholds ([`CostThresholds`])
/// and the lanes ([`AdmissionConfig`]). (The two halves cannot be separate serde structs
/// flattened into this one: `flatten` does not work with `deny_unknown_fields`.)
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    /// A request is large when iipsrv decodes more pixels than this (tiles of the level it
    /// reads). Default 4194304 (2048²).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_decoded_pixels: Option<u64>,
    /// …or when it writes more pixels than this. Default 1048576 (1024²).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_output_pixels: Option<u64>,
    /// Processes large requests may hold at once. Default: half the processes rounded up,
    /// never all of them when there are two or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_max_slots: Option<usize>,
    /// A large request waiting this long goes before small ones. Default 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_first_after_ms: Option<u64>,
    #[serde(default)]
    pub small: RawLane,
    #[serde(default)]
    pub large: RawLane,
}

/// The resolved `gateway.admission` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Which lane a request's cost puts it in (the gateway's side).
    pub costs: CostThresholds,
    /// Lanes, slot limits, queue bounds and waits (the pool's side).
    pub lanes: AdmissionConfig,
}

impl RawAdmission {
    /// Checks every value against a pool of `processes` iipsrv processes whose requests wait
    /// at most `queue_timeout` (`backend.queue_timeout_ms`), and fills in the defaults.
    ///
    /// # Errors
    /// Every problem, one message each, named by its key under `gateway.admission`.
    pub fn resolve(
        &self,
        processes: usize,
        queue_timeout: Duration,
    ) -> Result<Admission, Vec<String>> {
        let mut problems = Vec::new();
        let costs = CostThresholds::resolve(
            self.large_decoded_pixels,
            self.large_output_pixels,
            &mut problems,
        );
        let lanes = RawLanes {
            large_max_slots: self.large_max_slots,
            large_first_after_ms: self.large_first_after_ms,
            small: self.small,
            large: self.large,
        }
        .resolve(processes, queue_timeout, &mut problems);
        if problems.is_empty() {
            Ok(Admission { costs, lanes })
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests;
