//! The load generator's own CPU time, from `/proc/self/stat`: on a machine it shares with the servers, what it
//! uses is taken from them, so the report states it.

/// Clock ticks per second of the `utime` and `stime` fields: the kernel's `USER_HZ`, fixed at 100 in the Linux
/// user-space ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds from the text of a `/proc/PID/stat` file.
pub fn parse_stat(text: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may contain spaces: count fields after its `)`.
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) are the 12th and 13th after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// This process's CPU seconds so far, or `None` off Linux.
pub fn own_cpu_seconds() -> Option<f64> {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_stat(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        let stat = "4242 (load test) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 4 0 1000 1000000 500";
        assert_eq!(parse_stat(stat), Some(3.8));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        assert!(own_cpu_seconds().is_some_and(|seconds| seconds >= 0.0));
    }
}
