//! Redis URLs: whether one is usable, and how to show one without its password.
//!
//! The one place a URL is redacted: the ID archive's store, the gateway's redirect lookup and
//! lazyfetch's download lock name their server by [`redact`]ed URL, so logs and CLI output never
//! carry the password.

/// Checks that `url` is a Redis URL the client accepts (`redis://[:password@]host:port/db`,
/// `rediss://…`, `unix://…`); done when a configuration loads, so a typo stops the program
/// instead of disabling the archive.
///
/// # Errors
///
/// The client's description of the problem, with the URL redacted.
pub fn check(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| e.to_string().replace(url, &redact(url)))
}

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    if !userinfo.contains(':') {
        return url.to_owned();
    }
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("redis://:pw@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://user:p@ss@host/"),
            "rediss://user:***@host/"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://user@host"), "redis://user@host");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn urls_are_checked() {
        assert!(check("redis://127.0.0.1:6379/0").is_ok());
        assert!(check("rediss://:pw@host/").is_ok());
        assert!(check("http://host/").is_err());
    }
}
