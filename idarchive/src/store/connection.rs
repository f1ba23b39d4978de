//! The store's client and its one shared connection.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Client;
use tokio::sync::OnceCell;

use super::{RedirectStore, StoreError};
use crate::keys::Keys;
use redis_url::redact;

impl RedirectStore {
    /// A store for `url` (`redis://[:password@]host:port/db`, `rediss://…`) and key `prefix`,
    /// without connecting yet. Needs no async runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::Url`] when the URL cannot be parsed.
    pub fn new(url: &str, prefix: &str) -> Result<RedirectStore, StoreError> {
        let shown = redact(url);
        let client = Client::open(url).map_err(|source| StoreError::Url {
            url: shown.clone(),
            source,
        })?;
        Ok(RedirectStore::with_client(client, shown, prefix))
    }

    /// A store for a `rediss://` URL whose server certificate comes from a private CA: `pem`
    /// is the CA certificate (instead of the public web roots). Does not connect yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Url`] when the URL or the certificate cannot be used.
    pub fn with_root_certificate(
        url: &str,
        prefix: &str,
        pem: Vec<u8>,
    ) -> Result<RedirectStore, StoreError> {
        let shown = redact(url);
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        let client =
            Client::build_with_tls(url, certificates).map_err(|source| StoreError::Url {
                url: shown.clone(),
                source,
            })?;
        Ok(RedirectStore::with_client(client, shown, prefix))
    }

    fn with_client(client: Client, shown: String, prefix: &str) -> RedirectStore {
        RedirectStore {
            client,
            url: shown,
            keys: Keys::new(prefix),
            connection: OnceCell::new(),
        }
    }

    /// Connects if need be and checks that Redis answers (and accepts our credentials).
    ///
    /// # Errors
    ///
    /// [`StoreError::Connect`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|source| StoreError::Connect {
                url: self.url.clone(),
                source,
            })?;
        Ok(())
    }

    /// A store that has connected (and authenticated) once, so a bad URL, a wrong password or a
    /// dead server shows up now.
    ///
    /// # Errors
    ///
    /// [`StoreError::Url`] or [`StoreError::Connect`].
    pub async fn connect(url: &str, prefix: &str) -> Result<RedirectStore, StoreError> {
        let store = RedirectStore::new(url, prefix)?;
        // A connection opens even without the password Redis wants; a command finds out.
        store.ping().await?;
        Ok(store)
    }

    /// The key layout under the store's prefix.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The shared connection, opened on first use.
    pub(super) async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(3)))
                    // Import batches and the export pages are large; a stuck Redis still fails.
                    .set_response_timeout(Some(Duration::from_secs(60)))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: self.url.clone(),
                        source,
                    })
            })
            .await?;
        Ok(manager.clone())
    }

    /// Sorts a Redis failure: unreachable or refused ([`StoreError::Connect`]), or a command
    /// that failed ([`StoreError::Redis`]).
    pub(super) fn redis_error(&self, source: redis::RedisError) -> StoreError {
        let url = self.url.clone();
        if source.is_connection_refusal()
            || source.is_timeout()
            || source.kind() == redis::ErrorKind::AuthenticationFailed
        {
            StoreError::Connect { url, source }
        } else {
            StoreError::Redis { url, source }
        }
    }
}
