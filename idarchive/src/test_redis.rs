//! This crate's tests against a real redis-server, started by the workspace's launcher
//! (`stack::redis::Redis`): a connected store and a plain connection for looking at the keys.

use stack::redis::Redis;

use crate::store::RedirectStore;

/// A store under `prefix` on `redis`, connected.
pub(crate) async fn store_on(redis: &Redis, prefix: &str) -> RedirectStore {
    RedirectStore::connect(&redis.url(), prefix)
        .await
        .expect("the test redis answers")
}

/// A plain connection for looking at the keys directly.
pub(crate) async fn conn(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the test redis answers")
}
