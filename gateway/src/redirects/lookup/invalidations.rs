//! The invalidation subscriber: keeps the lookup cache in step with edits made on any node.
//!
//! Every change to the archive is published on `{prefix}invalidate` (the identifier, or `*`
//! after a bulk import). This task holds a dedicated pub/sub connection subscribed to that
//! channel and evicts what each message names, so an edit reaches every node within a round trip.
//!
//! Messages published while the subscription is down are lost, so each successful (re)subscribe
//! clears the whole cache. A `PING` every [`PING_INTERVAL`] notices a connection that is open but
//! dead (a stopped or unreachable Redis) and reconnects; reconnection backs off from 100 ms to
//! 5 s. While the subscription is down, cached answers live at most `cache_ttl`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Client;

use super::RedirectLookup;

/// How often the subscription's connection is checked.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long connecting, subscribing or a `PING` may take before the connection is given up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Runs the subscriber until `stop` resolves. Does nothing when the archive is not in Redis.
pub async fn run(lookup: Arc<RedirectLookup>, stop: impl std::future::Future<Output = ()>) {
    let Some(redis) = lookup.redis.clone() else {
        return;
    };
    let client = match redis.client() {
        Ok(client) => client.clone(),
        Err(error) => {
            log::error!("redirect invalidations disabled: invalid redis_url: {error}");
            return;
        }
    };
    let channel = redis.channel();
    // Connect the lookups' shared connection now, on this runtime, so that the first requests
    // do not pay for it.
    let warm_up = async {
        if let Err(error) = redis.connect().await {
            log::warn!("redirect lookups: Redis not reachable at startup: {error:?}");
        }
    };
    let work = async {
        tokio::join!(warm_up, subscribe_forever(&lookup, &client, &channel));
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

async fn subscribe_forever(lookup: &RedirectLookup, client: &Client, channel: &str) {
    let mut retry = MIN_RETRY;
    let mut failures_in_a_row = 0u32;
    let mut subscribed_before = false;
    loop {
        match subscribe(client, channel).await {
            Ok((sink, stream)) => {
                // Whatever was published while we were not listening is lost.
                lookup.purge_all();
                let again = if subscribed_before { " again" } else { "" };
                log::info!("redirect invalidations: subscribed to {channel:?}{again}");
                subscribed_before = true;
                retry = MIN_RETRY;
                failures_in_a_row = 0;
                let why = listen(lookup, sink, stream).await;
                lookup.count_error("subscription");
                log::warn!("redirect invalidations: subscription lost ({why}); reconnecting");
            }
            Err(why) => {
                lookup.count_error("subscription");
                failures_in_a_row += 1;
                // Once per outage at warn level, then quietly.
                if failures_in_a_row == 1 {
                    log::warn!("redirect invalidations: cannot subscribe ({why}); retrying");
                } else {
                    log::debug!("redirect invalidations: cannot subscribe ({why}); retrying");
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Opens a dedicated connection and subscribes to `channel`.
async fn subscribe(client: &Client, channel: &str) -> Result<(PubSubSink, PubSubStream), String> {
    let subscribed = async {
        let pubsub = client.get_async_pubsub().await?;
        let (mut sink, stream) = pubsub.split();
        sink.subscribe(channel).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, subscribed).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
    }
}

/// Applies messages until the connection ends or stops answering; returns why.
async fn listen(lookup: &RedirectLookup, mut sink: PubSubSink, mut stream: PubSubStream) -> String {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return "connection closed".into();
                };
                apply(lookup, message.get_payload_bytes());
            }
            _ = ping.tick() => {
                match tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return format!("ping failed: {error}"),
                    Err(_) => return format!("no pong within {COMMAND_TIMEOUT:?}"),
                }
            }
        }
    }
}

/// Evicts what one message names: an identifier, or `*` for everything.
fn apply(lookup: &RedirectLookup, payload: &[u8]) {
    lookup.metrics.redirect_invalidations.inc();
    match std::str::from_utf8(payload) {
        Ok("*") => lookup.purge_all(),
        Ok(identifier) => lookup.purge(identifier),
        // Identifiers are UTF-8; a message that is not cannot name one, so be safe.
        Err(_) => lookup.purge_all(),
    }
}
