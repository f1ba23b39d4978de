//! The Lua scripts of the store (files in `lua/`, compiled in) and their arguments:
//! `write_records.lua` is the one writer of records (see the store's documentation), called by
//! a single edit's commit (`commit.lua`) and by an import batch (`batch.lua`); `release.lua`
//! frees the import lock.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;

use crate::codec;
use crate::keys::Keys;
use crate::model::{Change, Meta, HISTORY_LIMIT};

use super::import::LOCK_TTL;

const WRITE_RECORDS_LUA: &str = include_str!("lua/write_records.lua");

// `write_records.lua` keeps 100 history entries.
const _: () = assert!(HISTORY_LIMIT == 100);

/// A single edit's commit: compares what the edit read, then writes and publishes.
pub(super) static COMMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{WRITE_RECORDS_LUA}{}",
        include_str!("lua/commit.lua")
    ))
});

/// One batch of an import: writes records and drops them from the journal.
pub(super) static BATCH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{WRITE_RECORDS_LUA}{}",
        include_str!("lua/batch.lua")
    ))
});

/// Frees the import lock if it is still ours.
pub(super) static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/release.lua")));

/// Appends the seven `write_records` arguments of one change.
pub(super) fn record_args(cmd: &mut redis::Cmd, change: &Change, meta: &Meta) {
    let before = change.before.as_ref();
    let (kind, target) = change
        .after
        .as_ref()
        .map_or(("", ""), |r| codec::encode_redirect(&r.redirect));
    cmd.arg(&change.id)
        .arg(if before.is_some() { "1" } else { "0" })
        .arg(before.and_then(|r| r.target()).unwrap_or(""))
        .arg(kind)
        .arg(target)
        .arg(change.after.as_ref().map_or("", |r| r.reason.as_str()))
        .arg(change.history_json(meta));
}

/// The arguments of [`BATCH`] before the records: the journal entries it drops, and the lock
/// it keeps alive.
pub(super) fn batch_args(cmd: &mut redis::Cmd, keys: &Keys, drop_from_journal: usize, meta: &Meta) {
    cmd.arg(keys.import_journal())
        .arg(drop_from_journal)
        .arg(keys.import_lock())
        .arg(LOCK_TTL.as_millis() as u64)
        .arg(keys.prefix())
        .arg(&meta.at)
        .arg(&meta.by);
}

/// A call of `script` by its hash (`EVALSHA hash 0`), with `args` after.
pub(super) fn call(script: &redis::Script, args: impl FnOnce(&mut redis::Cmd)) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(0);
    args(&mut cmd);
    cmd
}

/// Runs a script by its hash, loading it first if Redis does not know it (a restarted Redis
/// forgets its scripts). `args` adds the arguments after `EVALSHA hash 0`.
pub(super) async fn eval<T: redis::FromRedisValue>(
    conn: &mut ConnectionManager,
    script: &redis::Script,
    args: impl FnOnce(&mut redis::Cmd),
) -> redis::RedisResult<T> {
    let cmd = call(script, args);
    match cmd.query_async(conn).await {
        Err(e) if e.code() == Some("NOSCRIPT") => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        result => result,
    }
}
