//! `lazyfetch prune`: when the cache is above its high watermark, remove least recently used
//! image units until it is below the low watermark.
//!
//! Choosing is a pure function ([`choose_victims`]) of (bytes, idle time, small?) rows. Small
//! masters (thumbnail-only images, below `small_master_bytes`) stay longer: their idle time is
//! divided by `small_master_weight`. Removing re-reads each victim's stamps first and spares a
//! unit used since the scan, so a prune running while the gateway serves does not remove what
//! is being read (and a request that still loses its master fetches it again).
//!
//! Whatever the watermarks, two kinds of leftovers are removed too: stale files in `tmp/`
//! (older than an hour: downloads of a process that was killed) and orphaned master files
//! placed over ten minutes ago (copies no sidecar names: see [`crate::units`]). The grace period
//! spares a copy renamed into place whose sidecar is being written right now.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::CacheConfig;
use crate::layout::CacheLayout;
use crate::purge::remove_unit;
use crate::size::{ByteSize, Percent};
use crate::units::{change_time, identifier_of, scan, scan_unit, Orphan};

/// A tmp file older than this belongs to a download that died.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// A master file no sidecar names, placed longer ago than this, is left over (not a copy whose
/// sidecar is being written: that takes a moment).
pub const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// Flags of `lazyfetch prune`.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// List what would be removed, remove nothing.
    pub dry_run: bool,
    /// Overrides `gateway.cache.budget`.
    pub budget: Option<ByteSize>,
    /// Overrides `gateway.cache.high_watermark`.
    pub high_watermark: Option<Percent>,
    /// Overrides `gateway.cache.low_watermark`.
    pub low_watermark: Option<Percent>,
}

/// One row for [`choose_victims`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Bytes removing it frees.
    pub bytes: u64,
    /// Time since its last access.
    pub idle: Duration,
    /// A small master: its idle time counts `small_weight` times less.
    pub small: bool,
}

/// Indexes of the candidates to remove, in removal order: nothing while `total` is at or below
/// `high`; otherwise the longest (weighted) idle first until the rest is at or below `low`.
pub fn choose_victims(
    candidates: &[Candidate],
    total: u64,
    high: u64,
    low: u64,
    small_weight: f64,
) -> Vec<usize> {
    if total <= high {
        return Vec::new();
    }
    let weighted = |c: &Candidate| {
        let idle = c.idle.as_secs_f64();
        if c.small {
            idle / small_weight
        } else {
            idle
        }
    };
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // Longest weighted idle first; ties: bigger first (frees the space with fewer removals).
    order.sort_by(|&a, &b| {
        weighted(&candidates[b])
            .total_cmp(&weighted(&candidates[a]))
            .then(candidates[b].bytes.cmp(&candidates[a].bytes))
    });
    let mut remaining = total;
    let mut victims = Vec::new();
    for index in order {
        if remaining <= low {
            break;
        }
        remaining = remaining.saturating_sub(candidates[index].bytes);
        victims.push(index);
    }
    victims
}

/// A unit that prune removed (or would remove, in a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct PrunedUnit {
    /// Image key.
    pub key: String,
    /// Identifier, when a sidecar or `.id` names it.
    pub identifier: Option<String>,
    /// Bytes freed.
    pub bytes: u64,
    /// Its last access (unix seconds).
    pub last_access: u64,
    /// Whether its master counted as small.
    pub small: bool,
}

/// What a prune run did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Nothing was removed.
    pub dry_run: bool,
    /// Budget in force.
    pub budget_bytes: u64,
    /// High watermark in bytes.
    pub high_bytes: u64,
    /// Low watermark in bytes.
    pub low_bytes: u64,
    /// Bytes of all units before.
    pub before_bytes: u64,
    /// Bytes of all units after (expected, in a dry run).
    pub after_bytes: u64,
    /// Units before.
    pub units_before: usize,
    /// Units removed, oldest first.
    pub removed: Vec<PrunedUnit>,
    /// Bytes freed by removing units.
    pub freed_bytes: u64,
    /// Victims spared because they were used after the scan.
    pub spared_in_use: usize,
    /// Stale tmp files removed.
    pub stale_tmp_removed: Vec<PathBuf>,
    /// Their bytes.
    pub stale_tmp_bytes: u64,
    /// Orphaned master files removed (old copies, masters from before versioned names).
    pub orphans_removed: Vec<PathBuf>,
    /// Their bytes.
    pub orphan_bytes: u64,
    /// Units that could not be removed, with the reason.
    pub errors: Vec<String>,
}

/// Runs a prune over the cache of `layout` with `cache`'s budget and watermarks (overridden by
/// `options`).
///
/// # Errors
/// The watermarks (with overrides) do not go together, or the cache cannot be scanned. A unit
/// that cannot be removed is reported in [`PruneReport::errors`] and the run goes on.
pub fn prune(
    layout: &CacheLayout,
    cache: &CacheConfig,
    options: PruneOptions,
) -> io::Result<PruneReport> {
    prune_at(layout, cache, &options, SystemTime::now())
}

/// [`prune`] as if the time were `now`.
///
/// # Errors
/// As [`prune`].
pub fn prune_at(
    layout: &CacheLayout,
    cache: &CacheConfig,
    options: &PruneOptions,
    now: SystemTime,
) -> io::Result<PruneReport> {
    let plan = plan(layout, cache, options, now)?;
    Ok(if options.dry_run {
        plan.into_report()
    } else {
        plan.apply(layout)
    })
}

/// What a prune run is about to remove, decided from one scan.
#[derive(Debug, Clone)]
pub struct PrunePlan {
    report: PruneReport,
    victims: Vec<(PrunedUnit, SystemTime)>,
    stale_tmp: Vec<(PathBuf, u64)>,
    orphans: Vec<Orphan>,
}

/// Scans the cache and chooses what to remove (nothing is removed).
///
/// # Errors
/// As [`prune`].
pub fn plan(
    layout: &CacheLayout,
    cache: &CacheConfig,
    options: &PruneOptions,
    now: SystemTime,
) -> io::Result<PrunePlan> {
    let mut effective = cache.clone();
    effective.budget = options.budget.unwrap_or(cache.budget);
    effective.high_watermark = options.high_watermark.unwrap_or(cache.high_watermark);
    effective.low_watermark = options.low_watermark.unwrap_or(cache.low_watermark);
    effective
        .validate()
        .map_err(|errors| io::Error::new(io::ErrorKind::InvalidInput, errors.to_string()))?;
    let (high, low) = (
        effective.high_watermark_bytes(),
        effective.low_watermark_bytes(),
    );

    let scanned = scan(layout)?;
    let small_limit = effective.small_master_bytes.bytes();
    let candidates: Vec<Candidate> = scanned
        .units
        .iter()
        .map(|unit| Candidate {
            bytes: unit.bytes(),
            idle: now.duration_since(unit.last_access).unwrap_or_default(),
            small: unit.master_bytes.is_some_and(|bytes| bytes < small_limit),
        })
        .collect();
    let before = scanned.unit_bytes();
    let victims = choose_victims(
        &candidates,
        before,
        high,
        low,
        effective.small_master_weight,
    )
    .into_iter()
    .map(|index| {
        let unit = &scanned.units[index];
        let pruned = PrunedUnit {
            key: unit.key.clone(),
            identifier: identifier_of(layout, &unit.key),
            bytes: unit.bytes(),
            last_access: unit
                .last_access
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            small: candidates[index].small,
        };
        (pruned, unit.last_access)
    })
    .collect();
    let stale_tmp = scanned
        .tmp_files
        .iter()
        .filter(|(_, _, modified)| {
            now.duration_since(*modified)
                .is_ok_and(|age| age > STALE_TMP_AGE)
        })
        .map(|(path, bytes, _)| (path.clone(), *bytes))
        .collect();
    let orphans = scanned
        .orphans
        .into_iter()
        .filter(|orphan| {
            now.duration_since(orphan.placed)
                .is_ok_and(|age| age > ORPHAN_AGE)
        })
        .collect();
    Ok(PrunePlan {
        report: PruneReport {
            dry_run: options.dry_run,
            budget_bytes: effective.budget.bytes(),
            high_bytes: high,
            low_bytes: low,
            before_bytes: before,
            after_bytes: before,
            units_before: scanned.units.len(),
            removed: Vec::new(),
            freed_bytes: 0,
            spared_in_use: 0,
            stale_tmp_removed: Vec::new(),
            stale_tmp_bytes: 0,
            orphans_removed: Vec::new(),
            orphan_bytes: 0,
            errors: Vec::new(),
        },
        victims,
        stale_tmp,
        orphans,
    })
}

impl PrunePlan {
    /// The report of a dry run: what [`PrunePlan::apply`] would remove if nothing were used
    /// meanwhile.
    pub fn into_report(mut self) -> PruneReport {
        for (unit, _) in self.victims {
            self.report.freed_bytes += unit.bytes;
            self.report.removed.push(unit);
        }
        for (path, bytes) in self.stale_tmp {
            self.report.stale_tmp_removed.push(path);
            self.report.stale_tmp_bytes += bytes;
        }
        for orphan in self.orphans {
            self.report.orphans_removed.push(orphan.path);
            self.report.orphan_bytes += orphan.bytes;
        }
        self.report.after_bytes = self
            .report
            .before_bytes
            .saturating_sub(self.report.freed_bytes);
        self.report
    }

    /// Removes the chosen units, sparing any used since the scan (its stamps are read again
    /// just before it would go), the stale tmp files and the orphans.
    pub fn apply(mut self, layout: &CacheLayout) -> PruneReport {
        let report = &mut self.report;
        for (unit, scanned_access) in self.victims {
            match scan_unit(layout, &unit.key) {
                Ok(Some(now_unit)) if now_unit.last_access > scanned_access => {
                    report.spared_in_use += 1;
                    continue;
                }
                // Gone meanwhile (purged): nothing to free.
                Ok(None) => continue,
                Ok(Some(_)) => {}
                Err(error) => {
                    report.errors.push(format!("{}: {error}", unit.key));
                    continue;
                }
            }
            if let Err(error) = remove_unit(layout, &unit.key) {
                report.errors.push(format!("{}: {error}", unit.key));
                continue;
            }
            report.freed_bytes += unit.bytes;
            report.removed.push(unit);
        }
        report.after_bytes = report.before_bytes.saturating_sub(report.freed_bytes);
        for (path, bytes) in self.stale_tmp {
            if remove_if_present(&path) {
                report.stale_tmp_removed.push(path);
                report.stale_tmp_bytes += bytes;
            }
        }
        for orphan in self.orphans {
            match remove_orphan(&orphan) {
                Ok(true) => {
                    report.orphan_bytes += orphan.bytes;
                    report.orphans_removed.push(orphan.path);
                }
                Ok(false) => {}
                Err(error) => report
                    .errors
                    .push(format!("{}: {error}", orphan.path.display())),
            }
        }
        self.report
    }
}

fn remove_if_present(path: &Path) -> bool {
    std::fs::remove_file(path).is_ok()
}

/// Removes an orphan unless it is gone or was renamed into place again since the scan (a
/// download of the same version: its sidecar may name it now). True when removed.
fn remove_orphan(orphan: &Orphan) -> io::Result<bool> {
    match std::fs::symlink_metadata(&orphan.path) {
        Ok(metadata) if change_time(&metadata) == orphan.placed => {}
        Ok(_) => return Ok(false),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    }
    match std::fs::remove_file(&orphan.path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// The node_exporter textfile for a prune run. Counters (`_total`) continue from `previous`,
/// the file's earlier content.
pub fn textfile(report: &PruneReport, previous: Option<&str>, now: SystemTime) -> String {
    let previous_value = |name: &str| -> f64 {
        previous
            .into_iter()
            .flat_map(str::lines)
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                (metric == name)
                    .then(|| value.trim().parse::<f64>().ok())
                    .flatten()
            })
            .unwrap_or(0.0)
    };
    let runs = previous_value("iiif_masters_prune_runs_total") + 1.0;
    let freed_total =
        previous_value("iiif_masters_prune_freed_bytes_total") + report.freed_bytes as f64;
    let removed_total =
        previous_value("iiif_masters_prune_removed_units_total") + report.removed.len() as f64;
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "iiif_masters_prune_runs_total",
        "counter",
        "Prune runs (dry runs excluded).",
        runs,
    );
    metric(
        "iiif_masters_prune_freed_bytes_total",
        "counter",
        "Bytes freed by all prune runs.",
        freed_total,
    );
    metric(
        "iiif_masters_prune_removed_units_total",
        "counter",
        "Image units removed by all prune runs.",
        removed_total,
    );
    metric(
        "iiif_masters_prune_freed_bytes",
        "gauge",
        "Bytes freed by the last prune run.",
        report.freed_bytes as f64,
    );
    metric(
        "iiif_masters_cache_bytes",
        "gauge",
        "Bytes of masters, sidecars and derivatives after the last prune run.",
        report.after_bytes as f64,
    );
    metric(
        "iiif_masters_cache_budget_bytes",
        "gauge",
        "The cache budget in force for the last prune run.",
        report.budget_bytes as f64,
    );
    metric(
        "iiif_masters_prune_errors",
        "gauge",
        "Units the last prune run could not remove.",
        report.errors.len() as f64,
    );
    metric(
        "iiif_masters_prune_last_run_timestamp_seconds",
        "gauge",
        "When the last prune run finished (unix time).",
        timestamp,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(bytes: u64, idle_s: u64, small: bool) -> Candidate {
        Candidate {
            bytes,
            idle: Duration::from_secs(idle_s),
            small,
        }
    }

    #[test]
    fn nothing_below_the_high_watermark() {
        let rows = [c(50, 100, false), c(40, 10, false)];
        assert!(choose_victims(&rows, 90, 90, 80, 4.0).is_empty());
    }

    #[test]
    fn oldest_first_until_below_the_low_watermark() {
        let rows = [
            c(30, 10, false),
            c(30, 300, false),
            c(30, 200, false),
            c(30, 100, false),
        ];
        // 120 > 100: remove the oldest until ≤ 60.
        assert_eq!(choose_victims(&rows, 120, 100, 60, 4.0), [1, 2]);
    }

    #[test]
    fn small_masters_stay_longer() {
        // The small one is idle 300 s, weighted 75 s: younger than the 100 s big one.
        let rows = [c(10, 300, true), c(50, 100, false), c(50, 50, false)];
        assert_eq!(choose_victims(&rows, 110, 100, 60, 4.0), [1]);
        // Weighted 300/4 = 75 > 50: it goes before the 50 s one.
        assert_eq!(choose_victims(&rows, 110, 100, 0, 4.0), [1, 0, 2]);
    }

    #[test]
    fn textfile_counters_continue() {
        let report = PruneReport {
            dry_run: false,
            budget_bytes: 1000,
            high_bytes: 900,
            low_bytes: 800,
            before_bytes: 950,
            after_bytes: 700,
            units_before: 3,
            removed: vec![],
            freed_bytes: 250,
            spared_in_use: 0,
            stale_tmp_removed: vec![],
            stale_tmp_bytes: 0,
            orphans_removed: vec![],
            orphan_bytes: 0,
            errors: vec![],
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let first = textfile(&report, None, now);
        assert!(
            first.contains("\niiif_masters_prune_runs_total 1\n"),
            "{first}"
        );
        assert!(first.contains("\niiif_masters_cache_bytes 700\n"));
        assert!(first.contains("\niiif_masters_prune_last_run_timestamp_seconds 1700000000\n"));
        let second = textfile(&report, Some(&first), now);
        assert!(second.contains("\niiif_masters_prune_runs_total 2\n"));
        assert!(second.contains("\niiif_masters_prune_freed_bytes_total 500\n"));
        assert!(second.contains("\niiif_masters_prune_freed_bytes 250\n"));
    }

    proptest! {
        #[test]
        fn victims_bring_the_cache_under_low_and_no_more(
            rows in proptest::collection::vec((1u64..1000, 0u64..10_000, any::<bool>()), 0..60),
            high_share in 1u64..100,
            low_gap in 1u64..100,
        ) {
            let candidates: Vec<Candidate> = rows.iter().map(|&(b, i, s)| c(b, i, s)).collect();
            let total: u64 = candidates.iter().map(|c| c.bytes).sum();
            let high = total * high_share / 100;
            let low = high.saturating_sub(low_gap);
            let victims = choose_victims(&candidates, total, high, low, 4.0);
            let freed: u64 = victims.iter().map(|&i| candidates[i].bytes).sum();
            let mut unique = victims.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), victims.len());
            if total <= high {
                prop_assert!(victims.is_empty());
            } else {
                prop_assert!(total - freed <= low);
                // Minimal: without the last victim the cache would still be above low.
                let last = candidates[*victims.last().unwrap()].bytes;
                prop_assert!(total - freed + last > low);
            }
        }
    }
}
