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

/// The CPU seconds of process `pid` so far (all its threads), or `None` when it is gone.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| parse_stat(&text))
}

/// The parent pid in the text of a `/proc/PID/stat` file (field 4).
pub fn parse_parent(text: &str) -> Option<u32> {
    let after_name = &text[text.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The direct children of `pid` (nginx's workers of its master).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|text| parse_parent(&text))
                == Some(pid)
        })
        .collect()
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
        assert_eq!(parse_parent(stat), Some(1));
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        // Work until the kernel has charged a tick (10 ms) to this process, so the reading
        // must grow above zero; a reading stuck at 0 fails after 10 s of wall time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut sum = 0u64;
        while own_cpu_seconds().unwrap_or(0.0) == 0.0 && std::time::Instant::now() < deadline {
            for i in 0..100_000u64 {
                sum = sum.wrapping_add(std::hint::black_box(i * i));
            }
        }
        std::hint::black_box(sum);
        let seconds = own_cpu_seconds().expect("a /proc/self/stat reading");
        assert!(seconds > 0.0, "{seconds} CPU seconds after busy work");
        assert_eq!(
            cpu_seconds_of(std::process::id()).map(|s| s > 0.0),
            Some(true)
        );
    }

    #[test]
    fn a_child_is_found_under_its_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children_of(std::process::id()).contains(&child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found);
    }
}
