//! Invalidations of the lookup cache: every change to the archive is published on
//! `{prefix}invalidate` (the identifier, or `*` after a bulk import), and
//! [`crate::events`] delivers each message to every node, which evicts what it names, so an
//! edit reaches every node within a round trip. While the subscription is down, cached answers
//! live at most `cache_ttl`; each (re)subscribe clears the whole cache.

use redis::Client;

use super::RedirectLookup;

impl RedirectLookup {
    /// The Redis client and the invalidation channel, when the archive is in Redis.
    pub fn invalidations(&self) -> Option<(Client, String)> {
        let redis = self.redis.as_ref()?;
        match redis.client() {
            Ok(client) => Some((client.clone(), redis.channel())),
            Err(error) => {
                log::error!("redirect invalidations disabled: invalid redis_url: {error}");
                None
            }
        }
    }

    /// Connects the lookups' shared connection now, on the caller's runtime, so that the first
    /// requests do not pay for it.
    pub async fn warm_up(&self) {
        if let Some(redis) = &self.redis {
            if let Err(error) = redis.connect().await {
                log::warn!("redirect lookups: Redis not reachable at startup: {error:?}");
            }
        }
    }

    /// Subscribed (again): whatever was published while nobody listened is lost.
    pub fn invalidations_resumed(&self) {
        self.purge_all();
    }

    /// The subscription failed or was lost.
    pub fn invalidations_lost(&self) {
        self.count_error("subscription");
    }

    /// Evicts what one message names: an identifier, or `*` for everything.
    pub fn invalidate(&self, payload: &[u8]) {
        self.metrics.redirect_invalidations.inc();
        match std::str::from_utf8(payload) {
            Ok("*") => self.purge_all(),
            Ok(identifier) => self.purge(identifier),
            // Identifiers are UTF-8; a message that is not cannot name one, so be safe.
            Err(_) => self.purge_all(),
        }
    }
}
