//! The lane policy, wait estimate and refusals of admission control.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn config(processes: usize) -> AdmissionConfig {
    AdmissionConfig::defaults(processes, MS(30_000))
}

fn view(queued: [usize; 2], in_service: [usize; 2], healthy: usize) -> LaneView {
    LaneView {
        queued,
        in_service,
        healthy,
        service_time: [Some(MS(10)), Some(MS(500))],
    }
}

// === lanes and slots ===

#[test]
fn large_slots_leave_a_process_for_small_requests() {
    // (configured, healthy) → limit
    for (configured, healthy, limit) in [
        (1, 2, 1),
        (1, 1, 1),
        (1, 0, 1),
        (2, 4, 2),
        (3, 4, 3),
        (3, 3, 2),
        (3, 2, 1),
        (2, 1, 1),
    ] {
        assert_eq!(
            large_slot_limit(configured, healthy),
            limit,
            "{configured} {healthy}"
        );
    }
}

#[test]
fn default_large_slots_are_half_never_all() {
    let slots: Vec<usize> = (0..=6).map(|n| config(n).large_max_slots).collect();
    assert_eq!(slots, [1, 1, 1, 2, 2, 3, 3]);
}

#[test]
fn small_requests_go_first() {
    let config = config(2);
    let both = view([3, 3], [0, 0], 2);
    assert_eq!(next_lane(&config, &both, Some(MS(10))), Some(Lane::Small));
    let only_large = view([0, 3], [0, 0], 2);
    assert_eq!(
        next_lane(&config, &only_large, Some(MS(10))),
        Some(Lane::Large)
    );
    assert_eq!(next_lane(&config, &view([0, 0], [1, 1], 2), None), None);
}

#[test]
fn large_requests_never_exceed_their_slots() {
    let config = config(2);
    let full = view([0, 5], [0, 1], 2);
    assert_eq!(next_lane(&config, &full, Some(MS(60_000))), None);
    // Even when the large request is starving.
    let starving = view([2, 5], [0, 1], 2);
    assert_eq!(
        next_lane(&config, &starving, Some(MS(60_000))),
        Some(Lane::Small)
    );
}

#[test]
fn a_starving_large_request_goes_before_small_ones() {
    let config = config(2);
    let busy = view([5, 1], [1, 0], 2);
    assert_eq!(
        next_lane(&config, &busy, Some(config.large_first_after - MS(1))),
        Some(Lane::Small)
    );
    assert_eq!(
        next_lane(&config, &busy, Some(config.large_first_after)),
        Some(Lane::Large)
    );
}

#[test]
fn a_dead_process_shrinks_the_large_lane_first() {
    let config = AdmissionConfig {
        large_max_slots: 2,
        ..config(3)
    };
    // Three healthy: two large in service is the limit.
    assert_eq!(next_lane(&config, &view([0, 1], [0, 2], 3), None), None);
    assert_eq!(
        next_lane(&config, &view([0, 1], [0, 1], 3), None),
        Some(Lane::Large)
    );
    // One down: one large at a time, the other process stays for small requests.
    assert_eq!(next_lane(&config, &view([0, 1], [0, 1], 2), None), None);
    // Only one left: large requests share it, small ones first.
    assert_eq!(
        next_lane(&config, &view([0, 1], [0, 0], 1), None),
        Some(Lane::Large)
    );
    assert_eq!(
        next_lane(&config, &view([1, 1], [0, 0], 1), None),
        Some(Lane::Small)
    );
}

// === wait estimate and refusals ===

#[test]
fn wait_estimates_follow_the_queue_and_service_time() {
    let config = config(2);
    // Two processes, none rendering large: a small request behind 9 others waits for 10
    // service times of 10 ms shared by 2 processes.
    let idle = view([9, 0], [0, 0], 2);
    assert_eq!(estimated_wait(&config, Lane::Small, 9, &idle), Some(MS(50)));
    // One process busy with a large render: the small lane has one process.
    let one_large = view([9, 0], [0, 1], 2);
    assert_eq!(
        estimated_wait(&config, Lane::Small, 9, &one_large),
        Some(MS(100))
    );
    // Large: 4 ahead at 500 ms on 1 slot, after 9 small ones (10 ms over 2 processes).
    let large = view([9, 4], [0, 1], 2);
    assert_eq!(
        estimated_wait(&config, Lane::Large, 4, &large),
        Some(MS(2545))
    );
    // The only process rendering large: a small request waits for it, then its own turn.
    let single = view([0, 0], [0, 1], 1);
    assert_eq!(
        estimated_wait(&config, Lane::Small, 0, &single),
        Some(MS(510))
    );
    // No history: no estimate.
    let fresh = LaneView {
        service_time: [None, None],
        ..idle
    };
    assert_eq!(estimated_wait(&config, Lane::Small, 9, &fresh), None);
}

#[test]
fn a_full_queue_refuses_at_once() {
    let config = AdmissionConfig {
        small: LaneLimits {
            max_queue: 3,
            max_wait: MS(60_000),
        },
        ..config(2)
    };
    let queue = view([3, 0], [2, 0], 2);
    assert_eq!(admit(&config, Lane::Small, 2, &queue), Ok(()));
    let refused = admit(&config, Lane::Small, 3, &queue).unwrap_err();
    assert_eq!(refused.reason, RejectReason::QueueFull);
    assert_eq!(refused.lane, Lane::Small);
    assert_eq!(refused.to_string(), "the small lane's queue is full");
}

#[test]
fn a_long_estimated_wait_refuses_at_once() {
    let config = AdmissionConfig {
        large: LaneLimits {
            max_queue: 1000,
            max_wait: MS(20_000),
        },
        ..config(2)
    };
    // 500 ms per large render on one slot: 40 turns fit in 20 s, 41 do not.
    let queue = view([0, 40], [0, 1], 2);
    assert_eq!(admit(&config, Lane::Large, 39, &queue), Ok(()));
    let refused = admit(&config, Lane::Large, 40, &queue).unwrap_err();
    assert_eq!(refused.reason, RejectReason::WaitEstimate);
    assert_eq!(refused.retry_after, MS(20_000));
    assert_eq!(refused.retry_after_seconds(), 20);
}

#[test]
fn without_history_only_the_queue_bound_refuses() {
    let config = config(2);
    let fresh = LaneView {
        healthy: 2,
        queued: [0, 99],
        ..LaneView::default()
    };
    assert_eq!(admit(&config, Lane::Large, 99, &fresh), Ok(()));
    assert_eq!(
        admit(&config, Lane::Large, 100, &fresh).unwrap_err().reason,
        RejectReason::QueueFull
    );
    // The hint falls back to the lane's longest wait.
    assert_eq!(
        deadline_passed(&config, Lane::Large, &fresh).retry_after,
        config.large.max_wait
    );
}

#[test]
fn retry_after_is_whole_seconds_between_1_and_60() {
    let rejection = |ms| Rejection {
        lane: Lane::Small,
        reason: RejectReason::Deadline,
        retry_after: MS(ms),
    };
    assert_eq!(rejection(0).retry_after_seconds(), 1);
    assert_eq!(rejection(1001).retry_after_seconds(), 2);
    assert_eq!(rejection(3_600_000).retry_after_seconds(), 60);
    let forever = Rejection {
        retry_after: Duration::MAX,
        ..rejection(0)
    };
    assert_eq!(forever.retry_after_seconds(), 60);
}

#[test]
fn service_time_is_a_moving_average() {
    assert_eq!(updated_service_time(None, MS(100)), MS(100));
    assert_eq!(updated_service_time(Some(MS(100)), MS(1100)), MS(200));
}

// === properties ===

fn any_view() -> impl Strategy<Value = LaneView> {
    let service = prop_oneof![Just(None), (0u64..10_000).prop_map(|ms| Some(MS(ms)))];
    (
        [0usize..50, 0usize..50],
        [0usize..5, 0usize..5],
        0usize..6,
        [service.clone(), service],
    )
        .prop_map(|(queued, in_service, healthy, service_time)| LaneView {
            queued,
            in_service,
            healthy,
            service_time,
        })
}

fn any_config() -> impl Strategy<Value = AdmissionConfig> {
    (1usize..6, 0u64..5000, 0usize..60, 1u64..60_000).prop_map(
        |(slots, first_after, max_queue, max_wait)| AdmissionConfig {
            large_max_slots: slots,
            large_first_after: MS(first_after),
            small: LaneLimits {
                max_queue,
                max_wait: MS(max_wait),
            },
            large: LaneLimits {
                max_queue,
                max_wait: MS(max_wait),
            },
        },
    )
}

fn any_lane() -> impl Strategy<Value = Lane> {
    prop_oneof![Just(Lane::Small), Just(Lane::Large)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The large lane always leaves a healthy process to small requests when there are two,
    /// and never locks large requests out.
    #[test]
    fn slot_limits_reserve_a_process(configured in 1usize..10, healthy in 0usize..10) {
        let limit = large_slot_limit(configured, healthy);
        prop_assert!(limit >= 1 && limit <= configured);
        if healthy >= 2 {
            prop_assert!(limit < healthy);
        }
    }

    /// The next lane always has someone waiting and room to start, and a process is never
    /// left idle while a request that may start waits.
    #[test]
    fn next_lane_is_valid_and_work_conserving(
        config in any_config(),
        view in any_view(),
        oldest in 0u64..10_000,
    ) {
        let oldest_large_wait = (view.queued[1] > 0).then_some(MS(oldest));
        let limit = large_slot_limit(config.large_max_slots, view.healthy);
        match next_lane(&config, &view, oldest_large_wait) {
            Some(lane) => {
                prop_assert!(view.queued[lane.index()] > 0);
                if lane == Lane::Large {
                    prop_assert!(view.in_service[1] < limit);
                    prop_assert!(view.queued[0] == 0 || oldest >= config.large_first_after.as_millis() as u64);
                }
            }
            None => {
                prop_assert_eq!(view.queued[0], 0);
                prop_assert!(view.queued[1] == 0 || view.in_service[1] >= limit);
            }
        }
    }

    /// A longer queue never shortens the estimate, and the estimate is never below one
    /// service time per turn ahead on all processes.
    #[test]
    fn estimates_grow_with_the_queue(
        config in any_config(),
        view in any_view(),
        lane in any_lane(),
        ahead in 0usize..100,
    ) {
        let shorter = estimated_wait(&config, lane, ahead, &view);
        let longer = estimated_wait(&config, lane, ahead + 1, &view);
        prop_assert_eq!(shorter.is_some(), view.service_time[lane.index()].is_some());
        if let (Some(shorter), Some(longer)) = (shorter, longer) {
            prop_assert!(longer >= shorter);
        }
    }

    /// Admission refuses exactly the full queues and the waits estimated too long, and every
    /// refusal suggests a retry within a minute.
    #[test]
    fn admission_matches_its_rules(
        config in any_config(),
        view in any_view(),
        lane in any_lane(),
        ahead in 0usize..100,
    ) {
        let limits = config.limits(lane);
        let estimate = estimated_wait(&config, lane, ahead, &view);
        match admit(&config, lane, ahead, &view) {
            Ok(()) => {
                prop_assert!(ahead < limits.max_queue);
                prop_assert!(estimate.is_none_or(|wait| wait <= limits.max_wait));
            }
            Err(rejection) => {
                prop_assert_eq!(rejection.lane, lane);
                let expected = if ahead >= limits.max_queue {
                    RejectReason::QueueFull
                } else {
                    RejectReason::WaitEstimate
                };
                prop_assert_eq!(rejection.reason, expected);
                prop_assert!((1..=60).contains(&rejection.retry_after_seconds()));
            }
        }
    }
}
