//! Reads: one record, a record with its history, paged listing and export, and the import's
//! load of the whole archive.
//!
//! Listing walks `P ids` with `ZRANGEBYLEX` a page at a time and pipelines the records of each
//! page, so a million records take a few hundred round trips, not a million.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::{Progress, RedirectStore, StoreError};
use crate::codec;
use crate::model::{Archive, HistoryEntry, Record};
use crate::store::import::{Phase, LOCK_TTL};

/// Identifiers read per round trip when loading or exporting the archive.
pub(super) const PAGE: usize = 10_000;

impl RedirectStore {
    /// The record of `id`, `None` if it is not retired.
    ///
    /// # Errors
    ///
    /// Redis failed, or holds a malformed record.
    pub async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let mut conn = self.conn().await?;
        let fields: HashMap<String, String> = conn
            .hgetall(self.keys.redirect(id))
            .await
            .map_err(|e| self.redis_error(e))?;
        decode(id, &fields)
    }

    /// The record of `id` and its history, newest first. Either may be empty: a removed
    /// identifier keeps its history.
    ///
    /// # Errors
    ///
    /// Redis failed, or holds a malformed record.
    pub async fn show(&self, id: &str) -> Result<(Option<Record>, Vec<HistoryEntry>), StoreError> {
        let mut conn = self.conn().await?;
        let (fields, history): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.keys.redirect(id))
            .lrange(self.keys.history(id), 0, -1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        // Entries this program did not write are skipped rather than failing the whole answer.
        let history = history
            .iter()
            .filter_map(|h| serde_json::from_str(h).ok())
            .collect();
        Ok((decode(id, &fields)?, history))
    }

    /// Up to `limit` retired identifiers starting with `prefix`, in byte order, with their
    /// records (`usize::MAX`: all of them).
    ///
    /// # Errors
    ///
    /// Redis failed, or holds a malformed record.
    pub async fn list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let (min, max) = lex_range(prefix);
        self.page(min, max, limit).await
    }

    /// Calls `sink` with every record, in identifier order, a page at a time; returns how many.
    ///
    /// # Errors
    ///
    /// Redis failed, or `sink` did ([`StoreError::Output`]).
    pub async fn export(
        &self,
        mut sink: impl FnMut(&str, &Record) -> std::io::Result<()>,
    ) -> Result<usize, StoreError> {
        let mut min = b"-".to_vec();
        let mut n = 0;
        loop {
            let page = self.page(min, b"+".to_vec(), PAGE).await?;
            let Some((last, _)) = page.last() else {
                return Ok(n);
            };
            min = exclusive_after(last);
            for (id, record) in &page {
                sink(id, record)?;
                n += 1;
            }
        }
    }

    /// The identifiers in `[min, max]` (`ZRANGEBYLEX` syntax), `limit` at most.
    async fn ids(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        min: &[u8],
        max: &[u8],
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Redis reads a negative count as "no limit".
        let count = i64::try_from(limit).unwrap_or(-1);
        redis::cmd("ZRANGEBYLEX")
            .arg(self.keys.ids())
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(conn)
            .await
            .map_err(|e| self.redis_error(e))
    }

    /// Identifiers in `[min, max]` (`ZRANGEBYLEX` syntax) with their records, `limit` at most.
    async fn page(
        &self,
        min: Vec<u8>,
        max: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let mut conn = self.conn().await?;
        let ids = self.ids(&mut conn, &min, &max, limit).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.redirect(id));
        }
        let records: Vec<HashMap<String, String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, fields) in ids.into_iter().zip(records) {
            // An id listed without a record is skipped: it can only be a removal in between.
            if let Some(record) = decode(&id, &fields)? {
                out.push((id, record));
            }
        }
        Ok(out)
    }

    /// The whole archive, read a page of identifiers at a time with the fields the rules need
    /// (kind, target, reason) pipelined; keeps the import lock alive if `refresh_lock`.
    pub(super) async fn load(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
        refresh_lock: bool,
    ) -> Result<Archive, StoreError> {
        let mut conn = self.conn().await?;
        let total: u64 = conn
            .zcard(self.keys.ids())
            .await
            .map_err(|e| self.redis_error(e))?;
        let mut archive = Archive::new();
        let mut min = b"-".to_vec();
        let mut done = 0;
        loop {
            let ids = self.ids(&mut conn, &min, b"+", PAGE).await?;
            let Some(last) = ids.last() else {
                break;
            };
            min = exclusive_after(last);
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HMGET").arg(self.keys.redirect(id)).arg(&[
                    codec::KIND,
                    codec::TARGET,
                    codec::REASON,
                ]);
            }
            if refresh_lock {
                pipe.pexpire(self.keys.import_lock(), LOCK_TTL.as_millis() as i64)
                    .ignore();
            }
            let records: Vec<(Option<String>, Option<String>, Option<String>)> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            for (id, (kind, target, reason)) in ids.into_iter().zip(records) {
                done += 1;
                let redirect = codec::decode_redirect(&id, kind.as_deref(), target.as_deref())
                    .map_err(|problem| StoreError::malformed(&id, problem))?;
                let Some(redirect) = redirect else {
                    continue;
                };
                let record = Record {
                    redirect,
                    changed_at: String::new(),
                    changed_by: String::new(),
                    reason: reason.unwrap_or_default(),
                };
                archive.insert(id, record);
            }
            progress(Progress {
                phase: Phase::Loading,
                done,
                total,
            });
        }
        Ok(archive)
    }
}

/// A record hash through the codec, its problems as the store reports them.
pub(super) fn decode(
    id: &str,
    fields: &HashMap<String, String>,
) -> Result<Option<Record>, StoreError> {
    codec::decode_record(id, fields).map_err(|problem| StoreError::malformed(id, problem))
}

/// The ZRANGEBYLEX bounds of the identifiers starting with `prefix`. UTF-8 never contains the
/// byte 0xFF, so `[prefix\xff` is above every identifier that starts with `prefix`.
pub(super) fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut min = b"[".to_vec();
    min.extend_from_slice(prefix.as_bytes());
    let mut max = min.clone();
    max.push(0xff);
    (min, max)
}

/// The ZRANGEBYLEX bound just above `id`.
fn exclusive_after(id: &str) -> Vec<u8> {
    let mut bound = b"(".to_vec();
    bound.extend_from_slice(id.as_bytes());
    bound
}
