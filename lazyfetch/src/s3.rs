//! The S3 client (aws-sdk-s3) and one operation: a GET that may be conditional, with its answer
//! sorted into what lazyfetch acts on (body, not modified, not found, unavailable).
//!
//! Client settings follow `docs/pingora-notes.md` §5: path-style when asked, checksums computed
//! and validated only "when required" (several S3-compatible stores reject the SDK's default
//! checksum trailers), the response checksum still checked on downloads by asking for it with
//! `ChecksumMode::Enabled` (the SDK validates `x-amz-checksum-*` when the store sends one).

use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;

use crate::config::S3Config;
use crate::rules::S3Location;

/// Used when neither the config nor the environment names a region (S3's own default).
const FALLBACK_REGION: &str = "us-east-1";

/// Builds the S3 client. `secret` is the secret key already read from the config or its file.
/// Public for the launcher and the tests, which upload with the same settings the gateway reads with.
pub async fn client(config: &S3Config, secret: Option<String>) -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                .read_timeout(Duration::from_millis(config.first_byte_timeout_ms))
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(config.retries.saturating_add(1))
                .with_initial_backoff(Duration::from_millis(config.retry_initial_backoff_ms))
                .with_max_backoff(Duration::from_secs(5)),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let (Some(access_key_id), Some(secret)) = (&config.access_key_id, secret) {
        loader = loader.credentials_provider(Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "gateway.masters.s3",
        ));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.force_path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if shared.region().is_none() {
        log::info!("no S3 region configured or in the environment; using {FALLBACK_REGION}");
        builder = builder.region(Region::new(FALLBACK_REGION));
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A 200 answer whose body is still to be read.
pub(crate) struct ObjectBody {
    /// ETag as sent (with quotes).
    pub(crate) etag: Option<String>,
    /// Content-Length, when sent.
    pub(crate) content_length: Option<u64>,
    /// Last-Modified, when sent.
    pub(crate) last_modified: Option<SystemTime>,
    /// The checksum the SDK validates while the body is read (`crc32:…`), when the store sent one.
    pub(crate) checksum: Option<String>,
    pub(crate) body: ByteStream,
}

/// What S3 answered to a GET.
pub(crate) enum GetAnswer {
    Body(ObjectBody),
    NotModified,
    NotFound,
}

/// Why a GET got no usable answer.
#[derive(Debug)]
pub(crate) enum GetFailure {
    /// No usable answer (after the client's retries): worth trying later.
    Unavailable {
        /// What went wrong.
        reason: String,
        /// True when S3 did not answer or failed itself (connection, timeout, 5xx): an outage.
        /// False when it answered with a refusal (403 AccessDenied, 400, …): S3 is up, and
        /// other images may well be served.
        outage: bool,
    },
    /// The request could not even be built (a bucket name S3 does not accept).
    Invalid(String),
}

/// `GET bucket/key`, conditional on `if_none_match` when given.
pub(crate) async fn get(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
    if_none_match: Option<&str>,
) -> Result<GetAnswer, GetFailure> {
    let request = client
        .get_object()
        .bucket(&location.bucket)
        .key(&location.key)
        .checksum_mode(ChecksumMode::Enabled)
        .set_if_none_match(if_none_match.map(str::to_owned));
    match request.send().await {
        Ok(output) => {
            let checksum = [
                ("crc32", output.checksum_crc32()),
                ("crc32c", output.checksum_crc32_c()),
                ("crc64nvme", output.checksum_crc64_nvme()),
                ("sha1", output.checksum_sha1()),
                ("sha256", output.checksum_sha256()),
            ]
            .into_iter()
            .find_map(|(name, value)| value.map(|value| format!("{name}:{value}")));
            Ok(GetAnswer::Body(ObjectBody {
                etag: output.e_tag().map(str::to_owned),
                content_length: output.content_length().and_then(|n| u64::try_from(n).ok()),
                last_modified: output
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok()),
                checksum,
                body: output.body,
            }))
        }
        Err(error) => classify(error),
    }
}

fn classify(
    error: SdkError<GetObjectError, aws_sdk_s3::config::http::HttpResponse>,
) -> Result<GetAnswer, GetFailure> {
    let status = error.raw_response().map(|r| r.status().as_u16());
    // A 304 arrives as an error (aws-sdk-rust #534): the SDK models only 200 for GetObject.
    if status == Some(304) {
        return Ok(GetAnswer::NotModified);
    }
    if error
        .as_service_error()
        .is_some_and(GetObjectError::is_no_such_key)
    {
        return Ok(GetAnswer::NotFound);
    }
    let reason = DisplayErrorContext(&error).to_string();
    match (&error, status) {
        (SdkError::ConstructionFailure(_), _) => Err(GetFailure::Invalid(reason)),
        (_, Some(404)) => {
            // NoSuchBucket and friends: the rule points nowhere. A 404 to the client, and a log
            // line for the operator, who may have a typo in a bucket template.
            log::warn!("S3 answered 404 without NoSuchKey: {reason}");
            Ok(GetAnswer::NotFound)
        }
        (_, Some(status)) => Err(GetFailure::Unavailable {
            reason: format!("HTTP {status}: {reason}"),
            outage: status >= 500,
        }),
        _ => Err(GetFailure::Unavailable {
            reason,
            outage: true,
        }),
    }
}
