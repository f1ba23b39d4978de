//! Admin authentication: one bearer token (`gateway.admin.token`) for every admin API.

use super::reply::AdminResponse;

/// The refusal of a call without the right bearer token (403 while no token is configured, 401
/// otherwise); `None` when the call is authenticated. Every admin API checks this first.
pub fn refuse_unauthenticated(
    token: Option<&str>,
    authorization: Option<&str>,
) -> Option<AdminResponse> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Some(AdminResponse::error(
            403,
            "the admin API is disabled: set gateway.admin.token (or token_file)",
        ));
    };
    if !authorized(token, authorization) {
        return Some(
            AdminResponse::error(401, "missing or wrong bearer token")
                .with_header("WWW-Authenticate", "Bearer realm=\"iiif-gateway admin\""),
        );
    }
    None
}

/// Compares the bearer token in constant time (for a given token length), so response timing
/// does not reveal how much of a guess was right.
fn authorized(token: &str, authorization: Option<&str>) -> bool {
    let Some(header) = authorization else {
        return false;
    };
    let Some((scheme, given)) = header.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let (expected, given) = (token.as_bytes(), given.trim().as_bytes());
    let mut difference = u8::from(expected.len() != given.len());
    for (i, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(i).copied().unwrap_or(0);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";
    const AUTH: Option<&str> = Some("Bearer 0123456789abcdef-token");

    #[test]
    fn tokens_compare_exactly() {
        assert!(authorized(TOKEN, AUTH));
        assert!(authorized(TOKEN, Some("bearer  0123456789abcdef-token ")));
        assert!(!authorized(TOKEN, Some("Bearer 0123456789abcdef-toke")));
        assert!(!authorized(TOKEN, Some("Bearer 0123456789abcdef-tokenX")));
        assert!(!authorized(TOKEN, Some("Basic 0123456789abcdef-token")));
        assert!(!authorized(TOKEN, Some("Bearer")));
        assert!(!authorized(TOKEN, None));
    }

    #[test]
    fn no_token_is_403_and_a_wrong_one_401() {
        let status = |token, auth| refuse_unauthenticated(token, auth).map(|r| r.status);
        assert_eq!(status(None, AUTH), Some(403));
        assert_eq!(status(Some(""), AUTH), Some(403));
        assert_eq!(status(Some(TOKEN), None), Some(401));
        assert_eq!(status(Some(TOKEN), Some("Bearer nope")), Some(401));
        assert_eq!(status(Some(TOKEN), AUTH), None);
        let refusal = refuse_unauthenticated(Some(TOKEN), None).unwrap();
        assert_eq!(
            refusal.headers,
            vec![(
                "WWW-Authenticate",
                "Bearer realm=\"iiif-gateway admin\"".to_string()
            )]
        );
    }
}
