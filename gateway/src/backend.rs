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

use crate::admission::{Cost, CostThresholds, Lane};
use crate::error::{Answer, Error, Iipsrv as Failed};
use crate::fcgi::{BackendPool, BackendResponse, FcgiError};
use crate::metrics::Metrics;

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
    /// Which admission lane a request's cost puts it in; the pool sees only the lane.
    costs: CostThresholds,
    metrics: Arc<Metrics>,
}

impl Iipsrv {
    /// Speaks to `pool`, putting each request in the lane `costs` choose for it, and recording
    /// into `metrics` (the pool's admission lanes included).
    pub fn new(pool: Arc<BackendPool>, costs: CostThresholds, metrics: Arc<Metrics>) -> Self {
        pool.attach_admission_metrics(&metrics.admission);
        Iipsrv {
            pool,
            costs,
            metrics,
        }
    }

    /// Reads an image's size, tiles and pyramid from iipsrv's info.json. It costs iipsrv no
    /// pixels, so it waits in the small lane.
    ///
    /// # Errors
    /// [`Failed::NoSuchImage`] when iipsrv cannot open the file as an image, the other
    /// [`Failed`] variants when the pool is saturated or iipsrv fails.
    pub async fn info(&self, file: &ImageFile) -> Result<FetchedInfo, Error> {
        let query = format!("IIIF={}/info.json", file.encoded);
        let lane = self.costs.lane(&Cost::INFO);
        let response = self.execute("info", &query, lane).await?;
        match response.status {
            200 => {}
            // iipsrv answers 404 for a missing file and 400 for a file that is not a tiled image;
            // either way there is no image under this identifier.
            400 | 404 => {
                return Err(self.failed(Failed::NoSuchImage {
                    detail: format!("{}: {}", file.encoded, excerpt(&response.body)),
                }))
            }
            status => return Err(self.unexpected(status, &query, &response)),
        }
        let info = iiif::parse_backend_info(&response.body).map_err(|e| {
            self.failed(Failed::InvalidAnswer {
                what: Answer::Info,
                detail: format!("{query}: {e}"),
            })
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
    /// [`Failed::NoSuchImage`] when the file vanished, the other [`Failed`] variants when iipsrv
    /// fails, is busy or is slow.
    pub async fn image(
        &self,
        file: &ImageFile,
        request: &BackendRequest,
        cost: Cost,
    ) -> Result<FetchedImage, Error> {
        let query = iiif::backend_query(&file.encoded, request);
        let lane = self.costs.lane(&cost);
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
            200 => Err(self.failed(Failed::InvalidAnswer {
                what: Answer::Image,
                detail: format!("200 without a JPEG for {query}"),
            })),
            404 => Err(self.failed(Failed::NoSuchImage {
                detail: format!("{}: {}", file.encoded, excerpt(&response.body)),
            })),
            status => Err(self.unexpected(status, &query, &response)),
        }
    }

    async fn execute(&self, kind: &str, query: &str, lane: Lane) -> Result<BackendResponse, Error> {
        let params = cgi_params(query);
        let started = Instant::now();
        let result = self.pool.execute(&params, lane).await;
        self.metrics
            .backend_duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|error| self.failed(failed(error, query)))
    }

    /// Counts a failed exchange under its one metric label and hands the error on.
    fn failed(&self, failed: Failed) -> Error {
        let error = Error::from(failed);
        self.outcome(error.response().label);
        error
    }

    fn unexpected(&self, status: u16, query: &str, response: &BackendResponse) -> Error {
        self.failed(Failed::Rejected {
            status,
            detail: format!("{query}: {}", excerpt(&response.body)),
        })
    }

    fn outcome(&self, outcome: &str) {
        self.metrics
            .backend_requests
            .with_label_values(&[outcome])
            .inc();
    }
}

/// What a failed FastCGI exchange means for the request.
fn failed(error: FcgiError, query: &str) -> Failed {
    let detail = format!("{query}: {error}");
    match error {
        FcgiError::Saturated(rejection) => Failed::Saturated(rejection),
        FcgiError::NoHealthyBackend => Failed::NoProcess,
        FcgiError::Timeout(_) => Failed::Timeout { detail },
        FcgiError::EndedWithoutResponse => Failed::Crashed { detail },
        FcgiError::Connect(_)
        | FcgiError::Io(_)
        | FcgiError::Protocol(_)
        | FcgiError::BadHead(_)
        | FcgiError::TooLarge(_)
        | FcgiError::InvalidParams(_) => Failed::Unreachable { detail },
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
    use crate::admission::{Lane, RejectReason, Rejection};
    use crate::fcgi::PoolConfig;

    #[test]
    fn a_refused_request_is_counted_as_saturated() {
        let iipsrv = Iipsrv::new(
            BackendPool::new(PoolConfig::default()),
            CostThresholds::default(),
            Arc::new(Metrics::new()),
        );
        for reason in [
            RejectReason::QueueFull,
            RejectReason::WaitEstimate,
            RejectReason::Deadline,
        ] {
            let rejection = Rejection {
                lane: Lane::Large,
                reason,
                retry_after: Duration::from_secs(2),
            };
            let error = iipsrv.failed(failed(FcgiError::Saturated(rejection), "IIIF=x/info.json"));
            assert_eq!(error, Error::Iipsrv(Failed::Saturated(rejection)));
        }
        let text = String::from_utf8(iipsrv.metrics.render()).unwrap();
        assert!(
            text.contains("iiif_gateway_backend_requests_total{outcome=\"saturated\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn a_crash_is_never_taken_for_a_missing_file() {
        let error = Error::from(failed(FcgiError::EndedWithoutResponse, "IIIF=x"));
        assert!(!error.is_missing_file());
        assert_eq!(error.response().status, 502);
    }
}
