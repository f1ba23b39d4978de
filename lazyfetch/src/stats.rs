//! `lazyfetch stats`: how full the cache is and how close to its watermarks.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::CacheConfig;
use crate::layout::CacheLayout;
use crate::units::scan;

/// A snapshot of the cache (sizes in bytes, times in unix seconds).
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    /// The cache root.
    pub root: String,
    /// Bytes of all image units (masters, sidecars, derivatives).
    pub bytes: u64,
    /// Image units.
    pub units: usize,
    /// Units with a master (a current copy: the one its sidecar names).
    pub masters: usize,
    /// Bytes of the masters' current copies.
    pub master_bytes: u64,
    /// Master files no sidecar names (old copies, masters from before versioned names), not
    /// counted in `bytes`: prune removes them whatever the watermarks.
    pub orphans: usize,
    /// Their bytes.
    pub orphan_bytes: u64,
    /// Bytes of derivatives.
    pub derivatives_bytes: u64,
    /// Bytes in `tmp/` (downloads in progress or left by a killed process).
    pub tmp_bytes: u64,
    /// The least recent last access of any unit.
    pub oldest_access: Option<u64>,
    /// The most recent one.
    pub newest_access: Option<u64>,
    /// The budget.
    pub budget_bytes: u64,
    /// `bytes` as a percentage of the budget.
    pub percent_of_budget: f64,
    /// High watermark in bytes.
    pub high_watermark_bytes: u64,
    /// Low watermark in bytes.
    pub low_watermark_bytes: u64,
    /// Bytes until the high watermark (negative: above it, a prune would remove units).
    pub bytes_below_high: i64,
    /// Bytes until the low watermark (negative: above it).
    pub bytes_below_low: i64,
}

/// Scans the cache and summarises it against `cache`'s budget and watermarks.
///
/// # Errors
/// The cache cannot be scanned.
pub fn stats(layout: &CacheLayout, cache: &CacheConfig) -> io::Result<CacheStats> {
    let scanned = scan(layout)?;
    let bytes = scanned.unit_bytes();
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let accesses = scanned.units.iter().map(|u| unix(u.last_access));
    let high = cache.high_watermark_bytes();
    let low = cache.low_watermark_bytes();
    let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(CacheStats {
        root: layout.root().display().to_string(),
        bytes,
        units: scanned.units.len(),
        masters: scanned
            .units
            .iter()
            .filter(|u| u.master_bytes.is_some())
            .count(),
        master_bytes: scanned.units.iter().filter_map(|u| u.master_bytes).sum(),
        derivatives_bytes: scanned.units.iter().map(|u| u.derivatives_bytes).sum(),
        orphans: scanned.orphans.len(),
        orphan_bytes: scanned.orphan_bytes(),
        tmp_bytes: scanned.tmp_bytes(),
        oldest_access: accesses.clone().min(),
        newest_access: accesses.max(),
        budget_bytes: cache.budget.bytes(),
        percent_of_budget: if cache.budget.bytes() == 0 {
            0.0
        } else {
            bytes as f64 * 100.0 / cache.budget.bytes() as f64
        },
        high_watermark_bytes: high,
        low_watermark_bytes: low,
        bytes_below_high: signed(high) - signed(bytes),
        bytes_below_low: signed(low) - signed(bytes),
    })
}
