//! One module per command; this one holds what they share.

pub(crate) mod prune;
pub(crate) mod purge;
pub(crate) mod stats;
pub(crate) mod warm;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use lazyfetch::{CacheConfig, GatewaySections, MastersConfig};

/// The `gateway.cache` section of `config`, required.
pub(crate) fn cache_section(config: &Path) -> anyhow::Result<CacheConfig> {
    load(config)?.cache.with_context(|| {
        format!(
            "{}: no gateway.cache section (the cache root and budget)",
            config.display()
        )
    })
}

/// Both sections of `config`, both required.
pub(crate) fn both_sections(config: &Path) -> anyhow::Result<(CacheConfig, MastersConfig)> {
    let sections = load(config)?;
    let cache = sections.cache.with_context(|| {
        format!(
            "{}: no gateway.cache section (the cache root and budget)",
            config.display()
        )
    })?;
    let masters = sections.masters.with_context(|| {
        format!(
            "{}: no gateway.masters section: there is no S3 store to fetch from",
            config.display()
        )
    })?;
    Ok((cache, masters))
}

fn load(config: &Path) -> anyhow::Result<GatewaySections> {
    GatewaySections::load(config).map_err(|error| match error {
        lazyfetch::LoadError::Invalid(problems) => {
            anyhow::anyhow!("{}: invalid configuration:\n{problems}", config.display())
        }
        other => anyhow::anyhow!(other),
    })
}

/// Bytes the way operators read them (`1.50 GiB`).
pub(crate) fn human_bytes(bytes: u64) -> String {
    lazyfetch::size::ByteSize(bytes).to_string()
}

/// A unix time as an HTTP date plus how long ago (`…GMT, 3 d ago`).
pub(crate) fn human_time(unix_seconds: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_seconds);
    let ago = SystemTime::now()
        .duration_since(time)
        .unwrap_or_default()
        .as_secs();
    let ago = match ago {
        0..=119 => format!("{ago} s"),
        120..=7199 => format!("{} min", ago / 60),
        7200..=172_799 => format!("{} h", ago / 3600),
        _ => format!("{} d", ago / 86_400),
    };
    format!("{}, {ago} ago", httpdate::fmt_http_date(time))
}
