//! The admin console's files: a small web app (`gateway/console/`, no build step) compiled into
//! the binary and served on the admin listener only, at `/` and `/console/…`.
//!
//! The page holds no secret: it asks for the admin token, keeps it in the tab's
//! `sessionStorage` and sends it as `Authorization: Bearer` on every API call. No cookie is ever
//! set, so another site cannot make the browser call the admin API on the user's behalf (no
//! CSRF), and the Content-Security-Policy below allows only this origin's scripts and styles.
//! Images and info.json come from the public listener (another origin), which the viewer needs.

use super::AdminResponse;

/// Every file of the console: path, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "/console/console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/console.js"),
    ),
    (
        "/console/console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/console.css"),
    ),
    // OpenSeadragon 4.1.1 from npm (BSD-3-Clause, its licence beside it).
    (
        "/console/vendor/openseadragon.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/vendor/openseadragon.min.js"),
    ),
];

/// Scripts and styles from this origin only; images, info.json and tiles from anywhere (the
/// public listener, or a CDN in front of it); never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src * data: blob:; connect-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The file at `path`, or `None` when there is none (the caller answers 404).
pub fn asset(method: &str, path: &str) -> Option<AdminResponse> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    if method != "GET" && method != "HEAD" {
        return Some(
            AdminResponse::error(405, format!("{method} is not allowed here"))
                .with_header("Allow", "GET, HEAD"),
        );
    }
    Some(
        AdminResponse::new(200, content_type, bytes.to_vec())
            .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Referrer-Policy", "no-referrer")
            .with_header("X-Frame-Options", "DENY"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_its_type_and_the_policy() {
        for (path, content_type, bytes) in ASSETS {
            let answer = asset("GET", path).unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.content_type, *content_type);
            assert_eq!(answer.body, *bytes);
            assert!(!bytes.is_empty(), "{path}");
            assert!(answer
                .headers
                .iter()
                .any(|(n, v)| *n == "Content-Security-Policy" && v.contains("script-src 'self'")));
        }
    }

    #[test]
    fn other_paths_and_methods_are_not_files() {
        assert!(asset("GET", "/console/../Cargo.toml").is_none());
        assert!(asset("GET", "/console/").is_none());
        assert_eq!(asset("POST", "/").unwrap().status, 405);
    }

    #[test]
    fn the_page_loads_only_files_that_are_served() {
        let page = std::str::from_utf8(ASSETS[0].2).unwrap();
        for reference in page
            .split(['"', '\''])
            .filter(|s| s.starts_with("/console/"))
        {
            assert!(
                ASSETS.iter().any(|(p, _, _)| *p == reference),
                "index.html loads {reference}, which is not served"
            );
        }
    }
}
