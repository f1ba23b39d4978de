//! iipsrv as the gateway uses it: info and pixel requests over the FastCGI pool.
//!
//! This is the only module that knows how iipsrv wants to be asked (which CGI parameters it
//! reads) and how its answers map to the client's. Nothing from the client's request reaches
//! iipsrv except the validated identifier inside `QUERY_STRING`: no client headers (iipsrv would
//! trust `X-IIIF-ID` and `Host` for the ids it writes), no client query string (iipsrv accepts
//! other protocols there). iipsrv's own error bodies are logged for operators, never returned,
//! because they contain filesystem paths.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use iiif::{BackendInfo, BackendRequest, Identifier};

use crate::admission::{Cost, Lane, RejectReason};
use crate::fcgi::{BackendPool, BackendResponse, FcgiError};
use crate::metrics::Metrics;
use crate::reply::Failure;

/// `REQUEST_URI` sent to iipsrv. It must be set (iipsrv refuses info.json without it) and must not
/// start with a `URI_MAP` prefix such as `/iiif/`, or iipsrv would parse the path instead of the
/// query string. iipsrv 1.1 also strips the last 10 bytes (`/info.json`) from it when it answers
/// info.json, even when `HTTP_X_IIIF_ID` replaces the id it would build from it: a value shorter
/// than 10 bytes makes that throw (measured: `/iiif/x` fails with iipsrv's 400 page).
pub const BACKEND_REQUEST_URI: &str = "/fcgi-bin/iipsrv.fcgi";

/// iipsrv copies this verbatim into the `@id` of its info.json. A fixed, JSON-safe value keeps
/// its output parseable; the gateway writes the real public id itself.
pub const PLACEHOLDER_ID: &str = "urn:iiif-gateway:backend";

/// The CGI parameters of one iipsrv request whose `QUERY_STRING` is `query` (e.g.
/// `IIIF=a.tif/info.json`): the only parameters the gateway ever sends, in production and in
/// the tests of the FastCGI pool alike. Nothing here comes from the client's request.
pub fn cgi_params(query: &str) -> [(&'static str, &str); 8] {
    [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", BACKEND_REQUEST_URI),
        ("SCRIPT_NAME", BACKEND_REQUEST_URI),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", "iiif-gateway"),
        ("HTTP_HOST", "iiif-gateway"),
        ("HTTP_X_IIIF_ID", PLACEHOLDER_ID),
    ]
}

/// The file iipsrv reads for one image, encoded for its `QUERY_STRING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    encoded: String,
}

impl ImageFile {
    /// The identifier itself, below iipsrv's own `FILESYSTEM_PREFIX` (no master cache).
    pub fn from_identifier(identifier: &Identifier) -> Self {
        ImageFile {
            encoded: identifier.backend_encoded(),
        }
    }

    /// A master copied into the cache, by its path relative to the cache root (which is then
    /// iipsrv's `FILESYSTEM_PREFIX`).
    pub fn cached_master(relative_path: &str) -> Self {
        ImageFile {
            encoded: iiif::encode_backend_file(relative_path),
        }
    }
}

/// The pixels of one backend request.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    pub jpeg: Bytes,
    pub last_modified: Option<String>,
}

/// The facts of one image as iipsrv reported them.
#[derive(Debug, Clone)]
pub struct FetchedInfo {
    pub info: BackendInfo,
    pub last_modified: Option<String>,
}

/// The iipsrv pool, spoken to in iipsrv's IIIF 2 dialect.
pub struct Iipsrv {
    pool: Arc<BackendPool>,
    metrics: Arc<Metrics>,
}

impl Iipsrv {
    /// Speaks to `pool`, recording into `metrics` (the pool's admission lanes included).
    pub fn new(pool: Arc<BackendPool>, metrics: Arc<Metrics>) -> Self {
        pool.attach_admission_metrics(&metrics.admission);
        Iipsrv { pool, metrics }
    }

    /// Reads an image's size, tiles and pyramid from iipsrv's info.json. It costs iipsrv no
    /// pixels, so it waits in the small lane.
    ///
    /// # Errors
    /// 404 when iipsrv cannot open the identifier as an image, 503 when the pool is saturated,
    /// other 5xx when iipsrv fails.
    pub async fn info(&self, file: &ImageFile) -> Result<FetchedInfo, Failure> {
        let query = format!("IIIF={}/info.json", file.encoded);
        let lane = self.pool.admission().lane(&Cost::INFO);
        let response = self.execute("info", &query, lane).await?;
        match response.status {
            200 => {}
            // iipsrv answers 404 for a missing file and 400 for a file that is not a tiled image;
            // either way there is no image under this identifier.
            400 | 404 => {
                self.outcome("not_found");
                log::info!(
                    "iipsrv has no image at {}: {}",
                    file.encoded,
                    excerpt(&response.body)
                );
                return Err(Failure::new(404, "no image with this identifier"));
            }
            status => return Err(self.unexpected(status, &query, &response)),
        }
        let info = iiif::parse_backend_info(&response.body).map_err(|e| {
            self.outcome("invalid");
            log::error!("unparseable info.json from iipsrv for {query}: {e}");
            Failure::new(502, "the image server returned an invalid info.json")
        })?;
        self.outcome("ok");
        Ok(FetchedInfo {
            info,
            last_modified: response.header("Last-Modified").map(str::to_owned),
        })
    }

    /// Renders the pixels of a planned request (always a JPEG), waiting in the admission lane
    /// its estimated `cost` (see [`Cost::of_image`]) puts it in.
    ///
    /// # Errors
    /// 404 when the image vanished, 502/503/504 when iipsrv fails, is busy or is slow.
    pub async fn image(
        &self,
        file: &ImageFile,
        request: &BackendRequest,
        cost: Cost,
    ) -> Result<FetchedImage, Failure> {
        let query = iiif::backend_query(&file.encoded, request);
        let lane = self.pool.admission().lane(&cost);
        let response = self.execute("image", &query, lane).await?;
        match response.status {
            200 if response.body.starts_with(&[0xFF, 0xD8]) => {
                self.outcome("ok");
                Ok(FetchedImage {
                    last_modified: response.header("Last-Modified").map(str::to_owned),
                    jpeg: response.body,
                })
            }
            // iipsrv 1.1 sometimes answers 200 with raw pixels or a second CGI head instead of a JPEG.
            200 => {
                self.outcome("invalid");
                log::error!("iipsrv returned 200 without a JPEG for {query}");
                Err(Failure::new(
                    502,
                    "the image server returned an invalid image",
                ))
            }
            404 => {
                self.outcome("not_found");
                Err(Failure::new(404, "no image with this identifier"))
            }
            status => Err(self.unexpected(status, &query, &response)),
        }
    }

    async fn execute(
        &self,
        kind: &str,
        query: &str,
        lane: Lane,
    ) -> Result<BackendResponse, Failure> {
        let params = cgi_params(query);
        let started = Instant::now();
        let result = self.pool.execute(&params, lane).await;
        self.metrics
            .backend_duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|error| self.failure_of(error, query))
    }

    fn failure_of(&self, error: FcgiError, query: &str) -> Failure {
        let (outcome, failure) = match &error {
            FcgiError::Saturated(rejection) => (
                "saturated",
                Failure::unavailable(
                    match rejection.reason {
                        RejectReason::QueueFull => {
                            "too many requests are waiting for the image server"
                        }
                        RejectReason::WaitEstimate | RejectReason::Deadline => {
                            "the image server is too busy to answer in time"
                        }
                    },
                    rejection.retry_after_seconds(),
                ),
            ),
            FcgiError::NoHealthyBackend => (
                "unavailable",
                Failure::unavailable("no image server process is available", 5),
            ),
            FcgiError::Timeout(_) => (
                "timeout",
                Failure::new(504, "the image server took too long"),
            ),
            FcgiError::EndedWithoutResponse => (
                "crashed",
                Failure::new(502, "the image server failed on this request"),
            ),
            _ => (
                "error",
                Failure::new(502, "the image server could not be reached"),
            ),
        };
        self.outcome(outcome);
        if outcome == "saturated" {
            // Expected under overload and counted per lane and reason; not worth a warning each.
            log::debug!("refused {query}: {error}");
        } else {
            log::error!("iipsrv request {query} failed: {error}");
        }
        failure
    }

    fn unexpected(&self, status: u16, query: &str, response: &BackendResponse) -> Failure {
        self.outcome("rejected");
        log::error!(
            "iipsrv answered {status} to {query}: {}",
            excerpt(&response.body)
        );
        Failure::new(502, "the image server rejected the request")
    }

    fn outcome(&self, outcome: &str) {
        self.metrics
            .backend_requests
            .with_label_values(&[outcome])
            .inc();
    }
}

/// The start of an iipsrv error body, on one line, for the log.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admission::{Lane, Rejection};
    use crate::fcgi::PoolConfig;

    fn iipsrv() -> Iipsrv {
        Iipsrv::new(
            BackendPool::new(PoolConfig::default()),
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn a_refused_request_is_a_503_with_the_lanes_retry_hint() {
        let iipsrv = iipsrv();
        for (reason, retry_after, seconds) in [
            (RejectReason::QueueFull, Duration::from_millis(2500), 3),
            (RejectReason::WaitEstimate, Duration::from_secs(20), 20),
            (RejectReason::Deadline, Duration::ZERO, 1),
        ] {
            let rejection = Rejection {
                lane: Lane::Large,
                reason,
                retry_after,
            };
            let failure = iipsrv.failure_of(FcgiError::Saturated(rejection), "IIIF=x/info.json");
            assert_eq!(failure.status, 503, "{reason:?}");
            assert_eq!(failure.retry_after, Some(seconds), "{reason:?}");
        }
        let text = String::from_utf8(iipsrv.metrics.render()).unwrap();
        assert!(
            text.contains("iiif_gateway_backend_requests_total{outcome=\"saturated\"} 3"),
            "{text}"
        );
    }
}
