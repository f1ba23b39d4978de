//! Building lazyfetch instances against a test Garage, and reading their metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lazyfetch::config::{CacheConfig, LockConfig, MastersConfig, RuleConfig};
use lazyfetch::LazyFetch;
use prometheus::Registry;
use stack::Garage;

/// One lazyfetch instance (one gateway node) and its metrics.
pub(crate) struct Node {
    pub fetch: Arc<LazyFetch>,
    pub registry: Registry,
}

impl Node {
    /// The value of a counter or gauge, `label` = `(name, value)` when it has labels.
    pub(crate) fn metric(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        metric(&self.registry, name, label)
    }

    /// `iiif_masters_fetches_total{outcome}`.
    pub(crate) fn fetches(&self, outcome: &str) -> u64 {
        self.metric("iiif_masters_fetches_total", Some(("outcome", outcome))) as u64
    }

    /// `iiif_masters_revalidations_total{outcome}`.
    pub(crate) fn revalidations(&self, outcome: &str) -> u64 {
        self.metric(
            "iiif_masters_revalidations_total",
            Some(("outcome", outcome)),
        ) as u64
    }
}

/// Reads a metric through the text exposition format (independent of prometheus's features).
pub(crate) fn metric(registry: &Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let wanted_label = label.map(|(key, value)| format!("{key}=\"{value}\""));
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let series_name = series.split('{').next().unwrap();
        if series_name != name {
            continue;
        }
        if wanted_label
            .as_ref()
            .is_some_and(|l| !series.contains(l.as_str()))
        {
            continue;
        }
        found = true;
        sum += value.parse::<f64>().unwrap();
    }
    assert!(found, "no series {name} {label:?} in:\n{text}");
    sum
}

/// `gateway.cache` for a root (1 GiB budget, stamps touched on every use).
pub(crate) fn cache_config(root: &Path) -> CacheConfig {
    serde_yaml_ng::from_str(&format!(
        "root: {}\nbudget: 1GiB\ntouch_interval_s: 0\n",
        root.display()
    ))
    .unwrap()
}

/// `gateway.masters` for `garage` through `endpoint` (the server itself or a proxy in front),
/// with one rule: the identifier is the key.
pub(crate) fn masters_config(garage: &Garage, endpoint: Option<String>) -> MastersConfig {
    let mut s3 = garage.s3_config();
    if let Some(endpoint) = endpoint {
        s3.endpoint = Some(endpoint);
    }
    MastersConfig {
        s3,
        rules: vec![RuleConfig {
            pattern: "^(.+)$".into(),
            bucket: garage.bucket.clone(),
            key: "${1}".into(),
            bucket_from_identifier: false,
        }],
        revalidate_after_s: 3600,
        max_concurrent_downloads: 4,
        max_concurrent_lookups: 16,
        max_pending_lookups: 256,
        // The tests upload masters after asking for them; a remembered miss would hide them.
        miss_ttl_s: 0,
        max_master_bytes: lazyfetch::size::ByteSize(1 << 30),
        download_timeout_s: 60,
        unavailable_retry_after_s: 30,
        lock: None,
    }
}

/// The lock section for a Redis URL.
pub(crate) fn lock_config(redis_url: String) -> LockConfig {
    LockConfig {
        redis_url,
        ttl_ms: 30_000,
        key_prefix: "test:".into(),
        timeout_ms: 500,
    }
}

pub(crate) async fn node(cache: &CacheConfig, masters: &MastersConfig) -> Node {
    let registry = Registry::new();
    let fetch = LazyFetch::new(cache, masters, &registry).await.unwrap();
    Node { fetch, registry }
}

/// Deterministic content of `size` bytes that differs per `seed` (TIFF magic in front, as a
/// real master would have, though nothing here reads it).
pub(crate) fn content(size: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect();
    bytes[..4.min(size)].copy_from_slice(&b"II*\0"[..4.min(size)]);
    bytes
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
