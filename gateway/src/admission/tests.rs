//! The `gateway.admission` section: keys, defaults and problems.

use std::time::Duration;

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn resolve(yaml: &str, processes: usize) -> Result<Admission, Vec<String>> {
    let raw: RawAdmission = serde_yaml_ng::from_str(yaml).map_err(|e| vec![e.to_string()])?;
    raw.resolve(processes, MS(30_000))
}

#[test]
fn an_empty_section_gets_the_defaults() {
    let config = resolve("{}", 4).unwrap();
    assert_eq!(
        config,
        Admission {
            costs: CostThresholds {
                large_decoded_pixels: 2048 * 2048,
                large_output_pixels: 1024 * 1024,
            },
            lanes: AdmissionConfig {
                large_max_slots: 2,
                large_first_after: MS(2000),
                small: LaneLimits {
                    max_queue: 1000,
                    max_wait: MS(750)
                },
                large: LaneLimits {
                    max_queue: 100,
                    max_wait: MS(30_000)
                },
            },
        }
    );
    assert_eq!(config.costs, CostThresholds::default());
    assert_eq!(config.lanes, AdmissionConfig::defaults(4, MS(30_000)));
    // A short queue timeout caps the default waits.
    let short = RawAdmission::default().resolve(2, MS(500)).unwrap().lanes;
    assert_eq!(
        (short.small.max_wait, short.large.max_wait),
        (MS(500), MS(500))
    );
}

#[test]
fn every_key_is_read() {
    let yaml = "large_decoded_pixels: 100\nlarge_output_pixels: 200\nlarge_max_slots: 3\n\
                large_first_after_ms: 0\nsmall:\n  max_queue: 0\n  max_wait_ms: 50\n\
                large:\n  max_queue: 7\n  max_wait_ms: 9000\n";
    let config = resolve(yaml, 4).unwrap();
    assert_eq!(
        config,
        Admission {
            costs: CostThresholds {
                large_decoded_pixels: 100,
                large_output_pixels: 200,
            },
            lanes: AdmissionConfig {
                large_max_slots: 3,
                large_first_after: Duration::ZERO,
                small: LaneLimits {
                    max_queue: 0,
                    max_wait: MS(50)
                },
                large: LaneLimits {
                    max_queue: 7,
                    max_wait: MS(9000)
                },
            },
        }
    );
}

#[test]
fn every_problem_is_named() {
    let yaml = "large_decoded_pixels: 0\nlarge_output_pixels: 0\nlarge_max_slots: 2\n\
                small:\n  max_wait_ms: 0\nlarge:\n  max_wait_ms: 60000\n";
    let problems = resolve(yaml, 2).unwrap_err();
    assert_eq!(
        problems,
        [
            "gateway.admission.large_decoded_pixels must be at least 1",
            "gateway.admission.large_output_pixels must be at least 1",
            "gateway.admission.large_max_slots: 2 would let large renders take all 2 iipsrv \
             processes; use at most 1 so that cheap requests always find one",
            "gateway.admission.small.max_wait_ms must be at least 1",
            "gateway.admission.large.max_wait_ms: 60000 exceeds gateway.backend.queue_timeout_ms \
             (30000), the longest any request waits; raise that too",
        ]
    );
    assert_eq!(
        resolve("large_max_slots: 0", 2).unwrap_err(),
        ["gateway.admission.large_max_slots must be at least 1 (large requests would never run)"]
    );
}

#[test]
fn one_process_may_be_all_large_slots() {
    assert_eq!(
        resolve("large_max_slots: 1", 1)
            .unwrap()
            .lanes
            .large_max_slots,
        1
    );
}

#[test]
fn unknown_keys_are_refused() {
    let error = resolve("small:\n  max_wait: 5\n", 2).unwrap_err();
    assert!(error[0].contains("max_wait"), "{error:?}");
    let error = resolve("lanes: 3\n", 2).unwrap_err();
    assert!(error[0].contains("lanes"), "{error:?}");
}
