//! Re-runnable investigation of iipsrv 1.1 crashes and size exactness (not a regular test).
//!
//! ```text
//! cargo test --release -p gateway crash_probe -- --ignored --nocapture
//! ```
//!
//! It sends thousands of requests to one real iipsrv (restarted after every crash), compares each
//! outcome with the production model of iipsrv 1.1's level choice and region mapping (`View.cc`),
//! [`iiif::backend_level`] and [`iiif::crashes_iipsrv`] (`gateway/iiif/src/reshape.rs`), then
//! checks that the shift [`iiif::shift_off_the_edge`] suggests never crashes and keeps the exact
//! size. The details go to `$TMPDIR/iipsrv-crash-probe.txt`, the summary to stdout.
//!
//! # What the model says (and the probe confirms)
//! iipsrv picks a pyramid level per axis (the smallest level at least as large as the output
//! needs), then takes the *lower-resolution* of the two. With `s = 2^k` its scale factor and
//! `rh = floor(H / s)` its height, the region's top row in that level is
//! `round(H * (y / H) / s)` in `f32`. When that equals `rh` (it cannot exceed it for `y < H`) the
//! region starts past the last row of the level and iipsrv reads outside its buffer: SIGSEGV.
//! Columns likewise. The region's size plays no part except through the level choice, so a
//! crash needs `y > H - s/2`, i.e. a strip less than `s/2` rows tall touching the bottom edge.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::client::{execute_once, BackendAddr, Limits};
use super::record::encode_request;
use super::test_support::{images, jpeg_dimensions, Iipsrv, IMAGES};
use super::FcgiError;
use crate::backend::cgi_params;
use iiif::{ImageFacts, PixelRect};

/// An image's facts with the pyramid `vips tiffsave --pyramid` (default `--depth onetile`) writes:
/// halve (floor) until the image fits in one 256-px tile, one scale factor (1, 2, 4, …) per level.
/// `MAX_CVT` is iipsrv's default 5000. The probe checks the levels against iipsrv's info.json.
pub(crate) fn vips_facts(width: u32, height: u32) -> ImageFacts {
    ImageFacts::vips_pyramid(width, height)
}

fn rect([x, y, w, h]: [u32; 4]) -> PixelRect {
    PixelRect { x, y, w, h }
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Crash,
    Jpeg {
        w: u16,
        h: u16,
        components: u8,
        tile_path: bool,
    },
    Status(u16),
    Other(String),
}

impl Outcome {
    fn short(&self) -> String {
        match self {
            Outcome::Crash => "CRASH".into(),
            Outcome::Jpeg {
                w,
                h,
                components,
                tile_path,
            } => {
                format!(
                    "{w}x{h}x{components}{}",
                    if *tile_path { " JTL" } else { "" }
                )
            }
            Outcome::Status(s) => format!("status {s}"),
            Outcome::Other(s) => s.clone(),
        }
    }

    /// A coarse class for tallies.
    fn class(&self) -> String {
        match self {
            Outcome::Jpeg { .. } => "image".into(),
            other => other.short(),
        }
    }
}

/// One iipsrv, restarted whenever it dies.
struct Probe {
    server: Iipsrv,
    requests: usize,
    crashes: usize,
}

const PROBE_LIMITS: Limits = Limits {
    connect_timeout: Duration::from_secs(2),
    first_byte_timeout: Duration::from_secs(30),
    total_timeout: Duration::from_secs(60),
    max_response_bytes: 256 * 1024 * 1024,
};

impl Probe {
    async fn send(&mut self, query: &str) -> Result<super::BackendResponse, FcgiError> {
        self.requests += 1;
        let request = encode_request(&cgi_params(query), false).unwrap();
        let addr = BackendAddr::parse(&self.server.addr);
        let result = execute_once(&addr, "probe", &request, &PROBE_LIMITS).await;
        match &result {
            Err(FcgiError::EndedWithoutResponse) => {
                let exited = self.server.wait_exit(Duration::from_secs(3));
                assert!(exited, "EOF without the process exiting for {query}");
                self.crashes += 1;
                self.server.restart();
            }
            Err(_) => self.server.restart(),
            Ok(_) => {}
        }
        result
    }

    async fn get(&mut self, query: &str) -> Outcome {
        match self.send(query).await {
            Ok(r) if r.status == 200 => match jpeg_dimensions(&r.body) {
                Some((w, h, components)) => Outcome::Jpeg {
                    w,
                    h,
                    components,
                    tile_path: r.header("content-length").is_some(),
                },
                None => Outcome::Other(format!("200 but not a JPEG ({} bytes)", r.body.len())),
            },
            Ok(r) => Outcome::Status(r.status),
            Err(FcgiError::EndedWithoutResponse) => Outcome::Crash,
            Err(e) => Outcome::Other(format!("error: {e}")),
        }
    }
}

/// The size segment of a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Size {
    /// `w,h`: what the gateway sends.
    Exact(u32, u32),
    /// `w,`
    Width(u32),
    /// `,h`
    Height(u32),
}

impl Size {
    /// The output to give the production model, which is written for exact `w,h`. An axis that is
    /// not given (`w,` or `,h`) does not take part in iipsrv's level choice; asking for the region's
    /// own length on it (no scaling: level 0) has the same effect, since the level is the larger of
    /// the two axes' levels.
    fn model_output(self, region: [u32; 4]) -> (u32, u32) {
        match self {
            Size::Exact(w, h) => (w, h),
            Size::Width(w) => (w, region[3]),
            Size::Height(h) => (region[2], h),
        }
    }

    fn text(self) -> String {
        match self {
            Size::Exact(w, h) => format!("{w},{h}"),
            Size::Width(w) => format!("{w},"),
            Size::Height(h) => format!(",{h}"),
        }
    }
}

/// One request of the investigation.
#[derive(Debug, Clone)]
struct Case {
    image: &'static str,
    facts: ImageFacts,
    region: [u32; 4],
    size: Size,
    rotation: u32,
}

impl Case {
    fn query(&self) -> String {
        let [x, y, w, h] = self.region;
        format!(
            "IIIF={}/{x},{y},{w},{h}/{}/{}/default.jpg",
            self.image,
            self.size.text(),
            self.rotation
        )
    }

    fn output(&self) -> (u32, u32) {
        self.size.model_output(self.region)
    }

    fn predicts_crash(&self) -> bool {
        iiif::crashes_iipsrv(&self.facts, &rect(self.region), self.output())
    }

    fn scale(&self) -> u32 {
        1 << iiif::backend_level(&self.facts, &rect(self.region), self.output())
    }

    /// The output size an exact request must produce.
    fn expected(&self) -> Option<(u32, u32)> {
        match self.size {
            Size::Exact(w, h) if self.rotation % 180 == 90 => Some((h, w)),
            Size::Exact(w, h) => Some((w, h)),
            _ => None,
        }
    }

    fn reshaped(&self) -> Case {
        let PixelRect { x, y, w, h } =
            iiif::shift_off_the_edge(&self.facts, &rect(self.region), self.output());
        Case {
            region: [x, y, w, h],
            ..self.clone()
        }
    }
}

/// Results of a batch of cases.
#[derive(Default)]
struct Tally {
    requests: usize,
    crashes: usize,
    /// Exact-size cases where the model and iipsrv disagree.
    mismatches: Vec<String>,
    /// Exact-size cases that returned something other than an image of the requested size.
    wrong_size: Vec<String>,
    /// Outcome classes of `w,` / `,h` cases.
    partial_forms: BTreeMap<(String, String), usize>,
    /// Exact-size cases the model says crash.
    predicted: Vec<Case>,
}

impl Tally {
    async fn run(&mut self, probe: &mut Probe, case: &Case, report: &mut String) {
        let query = case.query();
        let outcome = probe.get(&query).await;
        let predicted = case.predicts_crash();
        self.requests += 1;
        if outcome == Outcome::Crash {
            self.crashes += 1;
        }
        let _ = writeln!(
            report,
            "{query:<62} s={:<3} predicted={:<5} got={}",
            case.scale(),
            if predicted { "CRASH" } else { "ok" },
            outcome.short()
        );
        let Some((ew, eh)) = case.expected() else {
            let form = if matches!(case.size, Size::Width(_)) {
                "w,"
            } else {
                ",h"
            };
            let key = (
                format!(
                    "{form} predicted {}",
                    if predicted { "crash" } else { "ok" }
                ),
                outcome.class(),
            );
            *self.partial_forms.entry(key).or_default() += 1;
            return;
        };
        if predicted != (outcome == Outcome::Crash) {
            self.mismatches
                .push(format!("{query} s={} -> {}", case.scale(), outcome.short()));
        }
        if predicted {
            self.predicted.push(case.clone());
        } else if !matches!(outcome, Outcome::Jpeg { w, h, .. } if (u32::from(w), u32::from(h)) == (ew, eh))
        {
            self.wrong_size
                .push(format!("{query} -> {}", outcome.short()));
        }
    }

    fn summary(&self, title: &str, out: &mut String) {
        let _ = writeln!(
            out,
            "{title}: {} requests, {} crashed; exact w,h: {} predicted to crash, {} model mismatches, {} wrong sizes",
            self.requests,
            self.crashes,
            self.predicted.len(),
            self.mismatches.len(),
            self.wrong_size.len()
        );
        for m in self.mismatches.iter().take(30) {
            let _ = writeln!(out, "  MISMATCH {m}");
        }
        for m in self.wrong_size.iter().take(30) {
            let _ = writeln!(out, "  WRONG SIZE {m}");
        }
        for ((form, class), n) in &self.partial_forms {
            let _ = writeln!(out, "  {form}: {n} x {class}");
        }
    }
}

/// Strips at the bottom and right edges: thickness 1–8, 0–6 px from the edge, downscaled by
/// 1–16, as `w,h`, `w,` and `,h`, rotated 0 and 90.
fn edge_grid() -> Vec<Case> {
    let mut cases = Vec::new();
    for &(image, width, height) in IMAGES {
        if image == "wide.tif" {
            continue; // the same geometry class as test.tif; used for the out-of-bounds list
        }
        let facts = vips_facts(width, height);
        for vertical in [true, false] {
            for thickness in [1u32, 2, 3, 4, 8] {
                for offset in 0..=6u32 {
                    let region = if vertical {
                        [0, height - thickness - offset, 100, thickness]
                    } else {
                        [width - thickness - offset, 0, thickness, 100]
                    };
                    for factor in [1.0f32, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0] {
                        let out_w = ((region[2] as f32 / factor).round() as u32).max(1);
                        let out_h = ((region[3] as f32 / factor).round() as u32).max(1);
                        for size in [
                            Size::Exact(out_w, out_h),
                            Size::Width(out_w),
                            Size::Height(out_h),
                        ] {
                            for rotation in [0, 90] {
                                cases.push(Case {
                                    image,
                                    facts: facts.clone(),
                                    region,
                                    size,
                                    rotation,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    cases
}

/// A small xorshift generator, so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(bound.max(1))) as u32
    }
}

/// Random exact-size requests for regions touching or near the bottom edge, the right edge or
/// the bottom-right corner, with any aspect ratio and scale, rotated by any multiple of 90.
fn random_edges(rng: &mut Rng, n: usize) -> Vec<Case> {
    (0..n)
        .map(|_| {
            let &(image, width, height) = &IMAGES[rng.below(IMAGES.len() as u32) as usize];
            let facts = vips_facts(width, height);
            let thin = |rng: &mut Rng, dim: u32| 1 + rng.below(20).min(dim - 1);
            let long = |rng: &mut Rng, dim: u32| 1 + rng.below(dim);
            let (w, h) = match rng.below(3) {
                0 => (long(rng, width), thin(rng, height)),
                1 => (thin(rng, width), long(rng, height)),
                _ => (thin(rng, width), thin(rng, height)),
            };
            let near =
                |rng: &mut Rng, dim: u32, len: u32| (dim - len).saturating_sub(rng.below(12));
            let x = if w < 21 {
                near(rng, width, w)
            } else {
                rng.below(width - w + 1)
            };
            let y = if h < 21 {
                near(rng, height, h)
            } else {
                rng.below(height - h + 1)
            };
            // Downscale each axis by 1x to 64x, independently (anisotropic sizes included).
            let scale = |rng: &mut Rng, len: u32| {
                let divisor = 1.0 + rng.below(640) as f32 / 10.0;
                ((len as f32 / divisor).round() as u32).max(1)
            };
            let size = Size::Exact(scale(rng, w), scale(rng, h));
            Case {
                image,
                facts,
                region: [x, y, w, h],
                size,
                rotation: 90 * rng.below(4),
            }
        })
        .collect()
}

#[tokio::test]
#[ignore = "investigation, minutes long: cargo test -- --ignored crash_probe"]
async fn crash_probe() {
    let mut probe = Probe {
        server: Iipsrv::spawn(images()),
        requests: 0,
        crashes: 0,
    };
    let mut report = String::new();
    let mut summary = String::new();

    // Level counts from iipsrv itself, to check the vips rule the model uses.
    for &(name, w, h) in IMAGES {
        let info = probe.send(&format!("IIIF={name}/info.json")).await.unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
        let factors: Vec<u32> =
            serde_json::from_value(info["tiles"][0]["scaleFactors"].clone()).unwrap();
        assert_eq!(factors, vips_facts(w, h).scale_factors, "{name}");
    }

    // --- 1. Thin strips at the edges, and random regions near them -----------------------------
    let mut grid = Tally::default();
    for case in edge_grid() {
        grid.run(&mut probe, &case, &mut report).await;
    }
    grid.summary("edge strip grid", &mut summary);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut random = Tally::default();
    for case in random_edges(&mut rng, 3000) {
        random.run(&mut probe, &case, &mut report).await;
    }
    random.summary("random exact-size regions near the edges", &mut summary);

    let _ = writeln!(
        summary,
        "crashing exact-size cases of the grid (rotation 0):"
    );
    for case in grid.predicted.iter().filter(|c| c.rotation == 0) {
        let _ = writeln!(summary, "  {}  (s={})", case.query(), case.scale());
    }

    // --- 2. The reshape, for every exact-size case the model says crashes ----------------------
    let mut reshape_failures = Vec::new();
    let mut reshaped = 0;
    for case in grid.predicted.iter().chain(&random.predicted) {
        let fixed = case.reshaped();
        assert!(!fixed.predicts_crash());
        let query = fixed.query();
        let outcome = probe.get(&query).await;
        reshaped += 1;
        let _ = writeln!(report, "RESHAPE {query:<62} got={}", outcome.short());
        let (ew, eh) = fixed.expected().unwrap();
        if !matches!(outcome, Outcome::Jpeg { w, h, .. } if (u32::from(w), u32::from(h)) == (ew, eh))
        {
            reshape_failures.push(format!("{query} -> {}", outcome.short()));
        }
    }
    let _ = writeln!(
        summary,
        "reshape (shift the start into the level's last row/column): {reshaped} re-requested, {} failures",
        reshape_failures.len()
    );
    for f in reshape_failures.iter().take(20) {
        let _ = writeln!(summary, "  RESHAPE FAILED {f}");
    }

    // --- 3. The reference's list -------------------------------------------------------------------
    let _ = writeln!(summary, "known cases:");
    for query in [
        "IIIF=wide.tif/0,750,10,10/full/0/default.jpg",
        "IIIF=wide.tif/100,800,300,200/full/0/default.jpg",
        "IIIF=wide.tif/999,749,10,10/full/0/default.jpg",
        "IIIF=wide.tif/pct:0,100,10,10/full/0/default.jpg",
        "IIIF=wide.tif/999,749,1,1/full/0/default.jpg",
        "IIIF=wide.tif/999,749,1,1/1,1/0/default.jpg",
        "IIIF=wide.tif/999,749,1,1/100,100/0/default.jpg",
        "IIIF=wide.tif/990,740,10,10/100,100/0/default.jpg",
        "IIIF=wide.tif/0,749,1000,1/2000,10/0/default.jpg",
        "IIIF=wide.tif/0,749,1000,1/500,1/0/default.jpg",
        "IIIF=wide.tif/0,748,1000,2/500,2/0/default.jpg",
        "IIIF=test.tif/0,999,100,1/50,1/0/default.jpg",
        "IIIF=test.tif/999,0,1,100/1,50/0/default.jpg",
        "IIIF=test.tif/0,998,100,1/50,1/0/default.jpg",
        "IIIF=test.tif/998,0,1,100/1,50/0/default.jpg",
        "IIIF=test.tif/0,999,100,1/100,1/0/default.jpg",
        "IIIF=test.tif/0,999,1000,1/500,1/0/default.jpg",
        "IIIF=test.tif/0,998,1000,2/250,1/0/default.jpg",
        "IIIF=test.tif/0,996,1000,4/125,1/0/default.jpg",
        "IIIF=test.tif/0,997,1000,3/125,1/0/default.jpg",
    ] {
        let outcome = probe.get(query).await;
        let _ = writeln!(summary, "  {query:<55} {}", outcome.short());
    }

    // --- 4. Bitonal on the tile path (JTL) and the CVT path -------------------------------------------
    let _ = writeln!(summary, "bitonal and gray:");
    for fresh in [true, false] {
        if fresh {
            probe.server.restart();
        }
        for query in [
            "IIIF=test.tif/0,0,256,256/256,/0/bitonal.jpg",
            "IIIF=test.tif/0,0,256,256/256,256/0/bitonal.jpg",
            "IIIF=test.tif/full/250,/0/bitonal.jpg",
            "IIIF=test.tif/full/250,250/0/bitonal.jpg",
            "IIIF=test.tif/full/200,/0/bitonal.jpg",
            "IIIF=test.tif/0,0,256,256/256,/0/gray.jpg",
        ] {
            let raw = raw_get(&mut probe, query).await;
            let _ = writeln!(
                summary,
                "  {}{query:<50} {raw}",
                if fresh { "[fresh] " } else { "" }
            );
            if fresh {
                break; // only the first request of a process is "fresh"
            }
        }
    }

    // --- 5. Tile-aligned requests and edge tiles -----------------------------------------------------
    let mut tiles = 0;
    let mut tile_wrong = Vec::new();
    let mut paths: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for &(image, width, height) in IMAGES {
        for (k, &s) in vips_facts(width, height).scale_factors.iter().enumerate() {
            let span = 256 * s;
            for ty in 0..height.div_ceil(span) {
                for tx in 0..width.div_ceil(span) {
                    let (x, y) = (tx * span, ty * span);
                    let (w, h) = (span.min(width - x), span.min(height - y));
                    // IIIF tile sizes: ceil(region / s).
                    let (ew, eh) = (w.div_ceil(s), h.div_ceil(s));
                    for (form, size) in [("w,", format!("{ew},")), ("w,h", format!("{ew},{eh}"))] {
                        let query = format!("IIIF={image}/{x},{y},{w},{h}/{size}/0/default.jpg");
                        let outcome = probe.get(&query).await;
                        tiles += 1;
                        let Outcome::Jpeg {
                            w: gw,
                            h: gh,
                            tile_path,
                            ..
                        } = outcome
                        else {
                            tile_wrong.push(format!("{query} -> {}", outcome.short()));
                            continue;
                        };
                        *paths
                            .entry((form, if tile_path { "JTL" } else { "CVT" }))
                            .or_default() += 1;
                        if (u32::from(gw), u32::from(gh)) != (ew, eh) {
                            tile_wrong.push(format!(
                                "{query} expected {ew}x{eh} got {gw}x{gh} via {} (level {}x{})",
                                if tile_path { "JTL" } else { "CVT" },
                                width >> k,
                                height >> k,
                            ));
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(
        summary,
        "tiles: {tiles} requests, paths {paths:?}; {} not ceil(w/s) x ceil(h/s):",
        tile_wrong.len()
    );
    for t in &tile_wrong {
        let _ = writeln!(summary, "  {t}");
    }

    // --- 6. Are exact `w,h` sizes exact? Random in-bounds regions and sizes --------------------------
    let mut exact = 0;
    let mut exact_wrong = Vec::new();
    let mut reshaped_first = 0;
    for _ in 0..600 {
        let &(image, width, height) = &IMAGES[rng.below(IMAGES.len() as u32) as usize];
        let facts = vips_facts(width, height);
        let (w, h) = (1 + rng.below(width), 1 + rng.below(height));
        let (x, y) = (rng.below(width - w + 1), rng.below(height - h + 1));
        // From 1 px to 1.5x the region (upscaling included), capped for speed.
        let ow = 1 + rng.below((w * 3 / 2).clamp(1, 1500));
        let oh = 1 + rng.below((h * 3 / 2).clamp(1, 1500));
        let mut case = Case {
            image,
            facts,
            region: [x, y, w, h],
            size: Size::Exact(ow, oh),
            rotation: 90 * rng.below(4),
        };
        if case.predicts_crash() {
            reshaped_first += 1;
            case = case.reshaped();
        }
        let query = case.query();
        let outcome = probe.get(&query).await;
        exact += 1;
        let (ew, eh) = case.expected().unwrap();
        if !matches!(outcome, Outcome::Jpeg { w, h, .. } if (u32::from(w), u32::from(h)) == (ew, eh))
        {
            exact_wrong.push(format!("{query} -> {}", outcome.short()));
        }
    }
    let _ = writeln!(
        summary,
        "exact w,h: {exact} random requests ({reshaped_first} reshaped first), {} not exact:",
        exact_wrong.len()
    );
    for e in exact_wrong.iter().take(30) {
        let _ = writeln!(summary, "  {e}");
    }

    // --- 7. Tile path (JTL) versus CVT, over TCP and a Unix socket -----------------------------------
    let _ = writeln!(summary, "latency, 200 sequential requests each:");
    let mut unix = Probe {
        server: Iipsrv::spawn_unix(images()),
        requests: 0,
        crashes: 0,
    };
    for (transport, probe) in [("tcp", &mut probe), ("unix", &mut unix)] {
        for query in [
            "IIIF=photo.tif/256,256,256,256/256,/0/default.jpg",
            "IIIF=photo.tif/256,256,256,256/256,256/0/default.jpg",
            "IIIF=photo.tif/512,512,512,512/256,/0/default.jpg",
            "IIIF=photo.tif/512,512,512,512/256,256/0/default.jpg",
        ] {
            let started = std::time::Instant::now();
            let mut last = Outcome::Crash;
            for _ in 0..200 {
                last = probe.get(query).await;
            }
            let _ = writeln!(
                summary,
                "  {transport:<4} {query:<55} {:>6.2} ms/request ({})",
                started.elapsed().as_secs_f64() * 1000.0 / 200.0,
                last.short()
            );
        }
    }

    let _ = writeln!(
        summary,
        "total: {} requests, {} crashes",
        probe.requests, probe.crashes
    );
    let path = std::env::temp_dir().join("iipsrv-crash-probe.txt");
    std::fs::write(&path, format!("{summary}\n--- details ---\n{report}")).unwrap();
    println!("{summary}\n(details in {})", path.display());
    assert!(
        grid.mismatches.is_empty() && random.mismatches.is_empty(),
        "the model does not explain every crash"
    );
    assert!(
        grid.wrong_size.is_empty() && random.wrong_size.is_empty(),
        "a non-crashing exact request was not exact"
    );
    assert!(reshape_failures.is_empty(), "a reshaped request failed");
    assert!(exact_wrong.is_empty(), "an exact request was not exact");
}

/// One request, described byte-wise (for answers that are not proper JPEGs).
async fn raw_get(probe: &mut Probe, query: &str) -> String {
    match probe.send(query).await {
        Ok(r) => {
            let body = &r.body;
            let described = match jpeg_dimensions(body) {
                Some((w, h, c)) => format!("JPEG {w}x{h}x{c}, {} bytes", body.len()),
                None => {
                    let extremes = body.iter().filter(|&&b| b == 0 || b == 255).count();
                    format!(
                        "NOT A JPEG: {} bytes, {}% of them 0x00/0xFF, starts {:02X?}",
                        body.len(),
                        extremes * 100 / body.len().max(1),
                        &body[..body.len().min(8)]
                    )
                }
            };
            format!(
                "status {} {described} content-type {:?} content-length {:?}",
                r.status,
                r.header("content-type"),
                r.header("content-length")
            )
        }
        Err(FcgiError::EndedWithoutResponse) => "CRASH".into(),
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn vips_facts_have_the_levels_iipsrv_reports() {
    assert_eq!(vips_facts(1000, 1000).scale_factors, [1, 2, 4]);
    assert_eq!(vips_facts(2736, 1824).scale_factors.len(), 5);
    assert_eq!(vips_facts(999, 777).scale_factors.len(), 3);
    // The documented crasher and its shift, through the production model.
    let square = vips_facts(1000, 1000);
    let strip = rect([0, 999, 100, 1]);
    assert!(iiif::crashes_iipsrv(&square, &strip, (50, 1)));
    assert_eq!(
        iiif::shift_off_the_edge(&square, &strip, (50, 1)),
        rect([0, 998, 100, 1])
    );
}
