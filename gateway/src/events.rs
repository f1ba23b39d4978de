//! What the gateway nodes tell each other, over Redis pub/sub on the ID archive's Redis.
//!
//! Two channels, named by the archive's key layout ([`idarchive::keys::Keys`]):
//!
//! - `{prefix}invalidate`: an identifier whose archive record changed, or `*` after a bulk
//!   import; published by the archive's edits. Every node evicts it from its lookup cache.
//! - `{prefix}purge`: an image purged through one node's admin API. Every node drops it from
//!   its memory tier and image facts, and removes its files when the cache mount is its own.
//!
//! Messages published while a node is not subscribed are lost, so each successful
//! (re)subscribe is reported to the [`Listener`], which forgets whatever it may have missed. A
//! `PING` every [`PING_INTERVAL`] notices a connection that is open but dead (a stopped or
//! unreachable Redis) and reconnects; reconnection backs off from 100 ms to 5 s.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Client;

/// How often the subscription's connection is checked.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long connecting, subscribing, publishing or a `PING` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What a node does with the messages.
pub trait Listener: Send + Sync {
    /// Subscribed (again): what was published before may have been missed.
    fn subscribed(&self);
    /// One message on one of the channels.
    fn message(&self, channel: &str, payload: &[u8]);
    /// The subscription failed or was lost (counted in the metrics).
    fn subscription_error(&self);
}

/// Stays subscribed to `channels` until `stop` resolves.
pub async fn run(
    client: &Client,
    channels: &[String],
    listener: &dyn Listener,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        () = subscribe_forever(client, channels, listener) => {}
        () = stop => {}
    }
}

/// Publishes one message.
///
/// # Errors
/// Redis could not be reached or did not answer within [`COMMAND_TIMEOUT`].
pub async fn publish(client: &Client, channel: &str, payload: &str) -> Result<(), String> {
    let published = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut connection)
            .await
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, published).await {
        Ok(Ok(_receivers)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
    }
}

async fn subscribe_forever(client: &Client, channels: &[String], listener: &dyn Listener) {
    let mut retry = MIN_RETRY;
    let mut failures_in_a_row = 0u32;
    let mut subscribed_before = false;
    loop {
        match subscribe(client, channels).await {
            Ok((sink, stream)) => {
                listener.subscribed();
                let again = if subscribed_before { " again" } else { "" };
                log::info!("node events: subscribed to {channels:?}{again}");
                subscribed_before = true;
                retry = MIN_RETRY;
                failures_in_a_row = 0;
                let why = listen(listener, sink, stream).await;
                listener.subscription_error();
                log::warn!("node events: subscription lost ({why}); reconnecting");
            }
            Err(why) => {
                listener.subscription_error();
                failures_in_a_row += 1;
                // Once per outage at warn level, then quietly.
                if failures_in_a_row == 1 {
                    log::warn!("node events: cannot subscribe ({why}); retrying");
                } else {
                    log::debug!("node events: cannot subscribe ({why}); retrying");
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Opens a dedicated connection and subscribes to every channel.
async fn subscribe(
    client: &Client,
    channels: &[String],
) -> Result<(PubSubSink, PubSubStream), String> {
    let subscribed = async {
        let pubsub = client.get_async_pubsub().await?;
        let (mut sink, stream) = pubsub.split();
        for channel in channels {
            sink.subscribe(channel).await?;
        }
        Ok::<_, redis::RedisError>((sink, stream))
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, subscribed).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
    }
}

/// Hands messages to the listener until the connection ends or stops answering; returns why.
async fn listen(listener: &dyn Listener, mut sink: PubSubSink, mut stream: PubSubStream) -> String {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return "connection closed".into();
                };
                listener.message(message.get_channel_name(), message.get_payload_bytes());
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
