//! The CGI parameters iipsrv 1.1 reads, as a small builder.
//!
//! Only what iipsrv looks at (iiif-reference §3.4). The pool does not use this: it sends whatever
//! parameters it is given. Nothing here comes from a client request, so iipsrv never sees a
//! client's `Host`, `X-IIIF-ID` or query string.

/// A `REQUEST_URI` that satisfies iipsrv 1.1.
///
/// iipsrv strips the last 10 bytes (`/info.json`) from `REQUEST_URI` when it answers info.json,
/// even when `HTTP_X_IIIF_ID` replaces the id it would build from it. A `REQUEST_URI` shorter
/// than 10 bytes makes that throw and info.json fails with the 400 HTML page (measured:
/// `/iiif/x` fails, `/x/info.json` works). It must also not start with a `URI_MAP` prefix.
pub const IIPSRV_REQUEST_URI: &str = "/fcgi-bin/iipsrv.fcgi";

/// Parameters for one iipsrv request.
///
/// `query` is the complete `QUERY_STRING`, e.g. `IIIF=a.tif/info.json`. `iiif_id` becomes the
/// `@id` of info.json verbatim; it must be JSON-safe (iipsrv does not escape it).
pub fn iipsrv_params<'a>(query: &'a str, iiif_id: &'a str) -> [(&'static str, &'a str); 6] {
    [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", IIPSRV_REQUEST_URI),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "localhost"),
        ("HTTP_X_IIIF_ID", iiif_id),
    ]
}
