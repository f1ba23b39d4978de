//! The admin API for cached images: `DELETE /admin/images/{id}` purges one image.
//!
//! Served on the admin listener only, with the same bearer token as the rest of the admin API.
//! `{id}` is percent-encoded (`/` as `%2F`). The answer says what was removed:
//!
//! ```json
//! {"identifier": "astronaut", "derivatives": {"files": 12, "bytes": 480123},
//!  "master": {"files": 2, "bytes": 3512001}, "facts": 1, "announced": true}
//! ```
//!
//! `master` is `null` when masters are not fetched from S3 (iipsrv's own files are never
//! touched). 404 when nothing was cached about the image on this node. `announced` says
//! whether the other nodes were told (`{prefix}purge` on the ID archive's Redis, see
//! [`crate::events`]): `true`, `false` when Redis could not be reached (they keep what they
//! hold in memory until their next resubscribe), `null` without `gateway.redirects`.

use percent_encoding::percent_decode_str;
use serde_json::json;

use super::auth::refuse_unauthenticated;
use super::AdminResponse;
use crate::app::Gateway;

/// The path prefix this API answers.
pub const PATH_PREFIX: &str = "/admin/images/";

/// Whether `path` (without the query) belongs to this API.
pub fn handles(path: &str) -> bool {
    path.starts_with(PATH_PREFIX)
}

/// Answers one request; `path` is the raw request path (still percent-encoded).
pub async fn handle(
    gateway: &Gateway,
    token: Option<&str>,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> AdminResponse {
    if let Some(refusal) = refuse_unauthenticated(token, authorization) {
        return refusal;
    }
    if method != "DELETE" {
        return AdminResponse::error(405, format!("{method} is not allowed here"))
            .with_header("Allow", "DELETE");
    }
    let encoded = path.strip_prefix(PATH_PREFIX).unwrap_or_default();
    let identifier = match percent_decode_str(encoded).decode_utf8() {
        Ok(identifier) if !identifier.is_empty() && !identifier.contains('\0') => identifier,
        _ => return AdminResponse::error(400, "the identifier must be non-empty UTF-8"),
    };
    match gateway.purge(&identifier).await {
        Ok(outcome) => {
            // The other nodes are told whatever this one held: they may hold it.
            let announced = match gateway.announce_purge(&identifier).await {
                None => None,
                Some(Ok(())) => Some(true),
                Some(Err(e)) => {
                    log::warn!("purge of {identifier:?}: the other nodes were not told: {e}");
                    Some(false)
                }
            };
            let status = if outcome.removed_anything() { 200 } else { 404 };
            let removed = |r: crate::derivatives::files::Removed| json!({ "files": r.files, "bytes": r.bytes });
            AdminResponse::json(
                status,
                &json!({
                    "identifier": outcome.identifier,
                    "derivatives": removed(outcome.derivatives),
                    "master": outcome.master.map(removed),
                    "facts": outcome.facts,
                    "announced": announced,
                }),
            )
        }
        Err(e) => {
            log::error!("purge of {identifier:?} failed: {e}");
            AdminResponse::error(500, format!("purge failed: {e}"))
        }
    }
}
