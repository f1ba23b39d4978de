//! The open-file limit: every virtual user holds one socket per target, so 1,000 users against two targets need
//! well over the usual soft limit of 1,024 descriptors. Checking it up front turns a storm of `connect`
//! failures in the middle of a run into one clear startup error.

/// Descriptors kept free for everything that is not a user socket (stdio, output files, the runtime).
pub const RESERVE: u64 = 64;

/// The soft "Max open files" limit from the text of `/proc/self/limits`; `None` when absent or unlimited.
pub fn soft_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process's soft limit, or `None` when it cannot be read or is unlimited.
pub fn current_soft_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| soft_limit(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(soft_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_limit(unlimited), None);
        assert_eq!(soft_limit(""), None);
    }
}
