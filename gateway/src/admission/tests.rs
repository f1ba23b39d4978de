//! The cost model, lane policy, wait estimate and configuration of admission control.

use std::time::Duration;

use iiif::{Capabilities, ImageFacts, Limits, Route, Version};
use proptest::prelude::*;

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The 100 Mpx benchmark image of `make-samples --bench`, as vips pyramids it.
fn large_photo() -> ImageFacts {
    ImageFacts::vips_pyramid(12288, 8192)
}

/// The cost of `path` (`region/size/rotation/quality.format`) on `facts` with 256-px tiles.
fn cost(path: &str, facts: &ImageFacts) -> Cost {
    let Route::Image { request, .. } =
        iiif::parse_route(Version::V3, &format!("id/{path}")).expect("a valid request")
    else {
        panic!("{path} is not an image request");
    };
    let plan = iiif::plan(
        Version::V3,
        &request,
        facts,
        &Limits::default(),
        &Capabilities::default(),
    )
    .expect("a plannable request");
    Cost::of_image(&plan, facts, DEFAULT_TILE)
}

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

// === cost ===

#[test]
fn an_aligned_tile_decodes_one_tile() {
    let tile = cost("0,0,256,256/256,256/0/default.jpg", &large_photo());
    assert_eq!(
        tile,
        Cost {
            decoded_pixels: 256 * 256,
            output_pixels: 256 * 256
        }
    );
    assert_eq!(config(2).lane(&tile), Lane::Small);
}

#[test]
fn an_unaligned_tile_decodes_the_four_it_touches() {
    let tile = cost("100,100,256,256/256,256/0/default.jpg", &large_photo());
    assert_eq!(tile.decoded_pixels, 4 * 256 * 256);
}

#[test]
fn a_zoomed_out_tile_reads_a_smaller_level() {
    // 1024×1024 of the full image at 256 px: iipsrv reads level 2, where it is one tile.
    let tile = cost("1024,1024,1024,1024/256,256/0/default.jpg", &large_photo());
    assert_eq!(tile.decoded_pixels, 256 * 256);
}

#[test]
fn a_thumbnail_of_a_huge_image_reads_its_smallest_level() {
    // The 12288×8192 pyramid ends in a 192×128 level: one tile.
    let thumb = cost("full/!128,128/0/default.jpg", &large_photo());
    assert_eq!(thumb.decoded_pixels, 256 * 256);
    assert_eq!(thumb.output_pixels, 128 * 85);
    assert_eq!(config(2).lane(&thumb), Lane::Small);
}

#[test]
fn a_1024_render_of_a_huge_image_is_small() {
    // Level 3 (1536×1024): 6 × 4 tiles.
    let render = cost("full/1024,/0/default.jpg", &large_photo());
    assert_eq!(render.decoded_pixels, 24 * 256 * 256);
    assert_eq!(render.output_pixels, 1024 * 683);
    assert_eq!(config(2).lane(&render), Lane::Small);
}

#[test]
fn a_full_render_of_a_huge_image_is_large() {
    // `max` is 5000×3333 (MAX_CVT); iipsrv reads level 1 (6144×4096), all 24 × 16 tiles.
    let full = cost("full/max/0/default.jpg", &large_photo());
    assert_eq!(full.output_pixels, 5000 * 3333);
    assert_eq!(full.decoded_pixels, 24 * 16 * 256 * 256);
    assert_eq!(config(2).lane(&full), Lane::Large);
    // A 3000-px render reads level 2 (3072×2048), all 12 × 8 tiles: large by both measures.
    let render = cost("full/3000,/0/default.jpg", &large_photo());
    assert_eq!(render.decoded_pixels, 12 * 8 * 256 * 256);
    assert_eq!(config(2).lane(&render), Lane::Large);
}

#[test]
fn a_large_output_from_a_small_source_is_large() {
    // 1000×1000 upscaled to 3000×3000: little to decode, much to write.
    let facts = ImageFacts::vips_pyramid(1000, 1000);
    let upscaled = cost("full/^3000,/0/default.jpg", &facts);
    assert_eq!(upscaled.decoded_pixels, 16 * 256 * 256);
    assert_eq!(config(2).lane(&upscaled), Lane::Large);
}

#[test]
fn info_is_small() {
    assert_eq!(config(2).lane(&Cost::INFO), Lane::Small);
}

#[test]
fn thresholds_are_exclusive() {
    let config = config(2);
    let at = Cost {
        decoded_pixels: config.large_decoded_pixels,
        output_pixels: config.large_output_pixels,
    };
    assert_eq!(config.lane(&at), Lane::Small);
    let over_decoded = Cost {
        decoded_pixels: at.decoded_pixels + 1,
        ..at
    };
    let over_output = Cost {
        output_pixels: at.output_pixels + 1,
        ..at
    };
    assert_eq!(config.lane(&over_decoded), Lane::Large);
    assert_eq!(config.lane(&over_output), Lane::Large);
}

#[test]
fn tile_size_comes_from_iipsrv_info() {
    let info = iiif::parse_backend_info(
        br#"{"width": 1000, "height": 750, "tiles": [{"width": 512, "scaleFactors": [1, 2]}]}"#,
    )
    .unwrap();
    assert_eq!(tile_size(&info), (512, 512));
    let bare = iiif::parse_backend_info(br#"{"width": 10, "height": 10}"#).unwrap();
    assert_eq!(tile_size(&bare), DEFAULT_TILE);
}

/// `tiles_spanned` against counting tiles one level pixel at a time.
#[test]
fn tile_spans_match_a_brute_force_count() {
    for dim in 1..=70u32 {
        for k in 0..=3 {
            for tile in [1, 3, 8, 16] {
                for start in 0..dim {
                    for len in 1..=dim - start {
                        let s = 1u32 << k;
                        let level = (dim >> k).max(1);
                        let first = (start / s).min(level - 1);
                        let end = (start + len).div_ceil(s).clamp(first + 1, level);
                        let tiles: std::collections::BTreeSet<u32> =
                            (first..end).map(|p| p / tile).collect();
                        assert_eq!(
                            tiles_spanned(dim, start, len, k, tile),
                            tiles.len() as u64,
                            "dim {dim} k {k} tile {tile} start {start} len {len}"
                        );
                    }
                }
            }
        }
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

// === configuration ===

fn resolve(yaml: &str, processes: usize) -> Result<AdmissionConfig, Vec<String>> {
    let raw: RawAdmission = serde_yaml_ng::from_str(yaml).map_err(|e| vec![e.to_string()])?;
    raw.resolve(processes, MS(30_000))
}

#[test]
fn an_empty_section_gets_the_defaults() {
    let config = resolve("{}", 4).unwrap();
    assert_eq!(
        config,
        AdmissionConfig {
            large_decoded_pixels: 2048 * 2048,
            large_output_pixels: 1024 * 1024,
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
        }
    );
    // A short queue timeout caps the default waits.
    let short = RawAdmission::default().resolve(2, MS(500)).unwrap();
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
        AdmissionConfig {
            large_decoded_pixels: 100,
            large_output_pixels: 200,
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
    assert_eq!(resolve("large_max_slots: 1", 1).unwrap().large_max_slots, 1);
}

#[test]
fn unknown_keys_are_refused() {
    let error = resolve("small:\n  max_wait: 5\n", 2).unwrap_err();
    assert!(error[0].contains("max_wait"), "{error:?}");
    let error = resolve("lanes: 3\n", 2).unwrap_err();
    assert!(error[0].contains("lanes"), "{error:?}");
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
            ..config(2)
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

    /// The cost covers the region at the level iipsrv reads, and a request that decodes and
    /// writes no more than a small one is small too.
    #[test]
    fn costs_cover_the_region_and_lanes_are_monotone(
        width in 1u32..40_000,
        height in 1u32..40_000,
        rx in 0.0f64..1.0, ry in 0.0f64..1.0, rw in 0.0f64..1.0, rh in 0.0f64..1.0,
        out_w in 1u32..5000, out_h in 1u32..5000,
        tile in prop_oneof![Just(256u32), 1u32..1024],
    ) {
        let facts = ImageFacts::vips_pyramid(width, height);
        let x = (rx * f64::from(width)) as u32;
        let y = (ry * f64::from(height)) as u32;
        let w = ((rw * f64::from(width - x)) as u32).max(1);
        let h = ((rh * f64::from(height - y)) as u32).max(1);
        let region = iiif::PixelRect { x, y, w, h };
        let output = (out_w, out_h);
        let k = iiif::backend_level(&facts, &region, output);
        let across = tiles_spanned(width, x, w, k, tile);
        let down = tiles_spanned(height, y, h, k, tile);
        let level_width = u64::from((width >> k).max(1));
        let level_height = u64::from((height >> k).max(1));
        // At least one tile each way, never more than the level has.
        prop_assert!(across >= 1 && across <= level_width.div_ceil(u64::from(tile)));
        prop_assert!(down >= 1 && down <= level_height.div_ceil(u64::from(tile)));
        // The tiles cover the region's pixels at that level.
        let scale = 1u64 << k;
        prop_assert!(across * u64::from(tile) >= (u64::from(w) / scale).min(level_width));
        prop_assert!(down * u64::from(tile) >= (u64::from(h) / scale).min(level_height));

        let config = config(2);
        let cost = Cost {
            decoded_pixels: across * down * u64::from(tile) * u64::from(tile),
            output_pixels: u64::from(out_w) * u64::from(out_h),
        };
        let cheaper = Cost {
            decoded_pixels: cost.decoded_pixels / 2,
            output_pixels: cost.output_pixels / 2,
        };
        if config.lane(&cost) == Lane::Small {
            prop_assert_eq!(config.lane(&cheaper), Lane::Small);
        }
    }
}
