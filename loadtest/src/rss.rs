//! Memory of watched processes (`--watch-pid NAME=PID`): `VmRSS` and `VmHWM` from `/proc/PID/status`, sampled
//! once a second for the whole run, each sample labelled with the phase (target) being measured.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A process to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The name in the report.
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

impl Watched {
    /// Parses `NAME=PID`.
    ///
    /// # Errors
    ///
    /// A message when the form is not `NAME=PID` with a positive PID.
    pub fn parse(spec: &str) -> Result<Watched, String> {
        let parsed = spec.split_once('=').and_then(|(name, pid)| {
            let pid = pid.trim().parse::<u32>().ok().filter(|pid| *pid > 0)?;
            let name = name.trim();
            (!name.is_empty()).then(|| Watched {
                name: name.to_string(),
                pid,
            })
        });
        parsed.ok_or_else(|| {
            format!("invalid --watch-pid {spec:?}: expected NAME=PID, e.g. gateway=1234")
        })
    }
}

/// The two memory figures of `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now.
    pub rss_kib: u64,
    /// Peak resident set size since the process started ("high water mark").
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` from the text of a `/proc/PID/status` file.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// One reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// Seconds since the watcher started.
    pub at_seconds: f64,
    /// The phase (target names) being measured, or `between phases`.
    pub phase: String,
    /// The watched process's name.
    pub name: String,
    /// `None` when the process could not be read (it exited).
    pub memory: Option<Memory>,
}

/// The peak figures of one process during one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Peak {
    /// The phase.
    pub phase: String,
    /// The process's name.
    pub name: String,
    /// The first readable RSS of the phase, KiB.
    pub first_rss_kib: u64,
    /// The last readable RSS of the phase, KiB.
    pub last_rss_kib: u64,
    /// The largest sampled RSS of the phase, KiB.
    pub peak_rss_kib: u64,
    /// `VmHWM` at the last reading of the phase, KiB (covers spikes between samples, since process start).
    pub hwm_kib: u64,
    /// Readings in which the process could not be read.
    pub missing: usize,
}

/// Summarises `readings` per phase and process, in order of first appearance.
pub fn peaks(readings: &[Reading]) -> Vec<Peak> {
    let mut peaks: Vec<Peak> = Vec::new();
    for reading in readings {
        let index = match peaks
            .iter()
            .position(|peak| peak.phase == reading.phase && peak.name == reading.name)
        {
            Some(index) => index,
            None => {
                peaks.push(Peak {
                    phase: reading.phase.clone(),
                    name: reading.name.clone(),
                    first_rss_kib: 0,
                    last_rss_kib: 0,
                    peak_rss_kib: 0,
                    hwm_kib: 0,
                    missing: 0,
                });
                peaks.len() - 1
            }
        };
        let peak = &mut peaks[index];
        match reading.memory {
            Some(memory) => {
                if peak.first_rss_kib == 0 {
                    peak.first_rss_kib = memory.rss_kib;
                }
                peak.last_rss_kib = memory.rss_kib;
                peak.peak_rss_kib = peak.peak_rss_kib.max(memory.rss_kib);
                peak.hwm_kib = memory.hwm_kib;
            }
            None => peak.missing += 1,
        }
    }
    peaks
}

/// A running watcher: set the phase label with [`Watcher::set_phase`], collect with [`Watcher::finish`].
pub struct Watcher {
    phase: watch::Sender<String>,
    task: JoinHandle<Vec<Reading>>,
}

/// The label of readings taken outside a measured window.
pub const BETWEEN_PHASES: &str = "between phases";

impl Watcher {
    /// Starts sampling `watched` every `interval`.
    pub fn start(watched: Vec<Watched>, interval: Duration) -> Watcher {
        let (phase, mut phase_rx) = watch::channel(BETWEEN_PHASES.to_string());
        let watched = Arc::new(watched);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut readings = Vec::new();
            let mut ticker = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    changed = phase_rx.changed() => {
                        if changed.is_err() {
                            return readings;
                        }
                    }
                }
                let phase = phase_rx.borrow().clone();
                for process in watched.iter() {
                    // A /proc read takes microseconds and never blocks on a disk: no need for a blocking pool.
                    let memory = std::fs::read_to_string(format!("/proc/{}/status", process.pid))
                        .ok()
                        .and_then(|text| parse_status(&text));
                    readings.push(Reading {
                        at_seconds: started.elapsed().as_secs_f64(),
                        phase: phase.clone(),
                        name: process.name.clone(),
                        memory,
                    });
                }
            }
        });
        Watcher { phase, task }
    }

    /// Labels the following readings (and takes one reading at once).
    pub fn set_phase(&self, phase: &str) {
        self.phase.send_replace(phase.to_string());
    }

    /// Stops sampling and returns every reading.
    pub async fn finish(self) -> Vec<Reading> {
        drop(self.phase);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tiiif-gateway\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nThreads:\t4\n";

    #[test]
    fn reads_rss_and_hwm() {
        assert_eq!(
            parse_status(STATUS),
            Some(Memory {
                rss_kib: 40960,
                hwm_kib: 51234
            })
        );
        // A kernel thread has no VmRSS line.
        assert_eq!(parse_status("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn parses_watch_specs() {
        assert_eq!(
            Watched::parse("gateway=42"),
            Ok(Watched {
                name: "gateway".into(),
                pid: 42
            })
        );
        for bad in ["gateway", "=42", "g=0", "g=x", "g=-1"] {
            assert!(Watched::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn peaks_per_phase_and_process() {
        let reading = |phase: &str, name: &str, rss: Option<u64>| Reading {
            at_seconds: 0.0,
            phase: phase.into(),
            name: name.into(),
            memory: rss.map(|rss_kib| Memory {
                rss_kib,
                hwm_kib: rss_kib + 1,
            }),
        };
        let readings = vec![
            reading("a", "gw", Some(10)),
            reading("a", "gw", Some(30)),
            reading("a", "gw", Some(20)),
            reading("a", "gw", None),
            reading("b", "gw", Some(5)),
        ];
        let summary = peaks(&readings);
        assert_eq!(summary.len(), 2);
        assert_eq!(
            (
                summary[0].first_rss_kib,
                summary[0].last_rss_kib,
                summary[0].peak_rss_kib
            ),
            (10, 20, 30)
        );
        assert_eq!((summary[0].hwm_kib, summary[0].missing), (21, 1));
        assert_eq!(
            (summary[1].phase.as_str(), summary[1].peak_rss_kib),
            ("b", 5)
        );
    }

    #[tokio::test]
    async fn watches_this_process() {
        let watcher = Watcher::start(
            vec![Watched {
                name: "self".into(),
                pid: std::process::id(),
            }],
            Duration::from_millis(10),
        );
        watcher.set_phase("p");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let readings = watcher.finish().await;
        assert!(readings
            .iter()
            .any(|r| r.phase == "p" && r.memory.is_some_and(|m| m.rss_kib > 0)));
    }
}
