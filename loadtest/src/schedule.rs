//! The request sequence of one virtual user: deterministic for a seed and a user number, so that two targets
//! measured back to back receive the same requests in the same order.
//!
//! Each request draws, independently: a source class uniformly among the classes that have images (the report's
//! client "selects an image identifier from one of three lists"), an image uniformly in that class, a derivative
//! class with the mix's weights, then the derivative's free parameters (the 3000-4096 side, the tile).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dataset::{Dataset, Image, SourceClass};
use crate::mix::{Derivative, Mix};
use crate::shape::Shape;
use crate::tile::random_tile;

/// The long side of a thumbnail.
pub const THUMB_SIDE: u32 = 128;
/// The long side of a medium render.
pub const MEDIUM_SIDE: u32 = 1024;
/// The range of the long side of a large render.
pub const LARGE_SIDES: std::ops::RangeInclusive<u32> = 3000..=4096;

/// One request of the sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRequest {
    /// The source class of the image (its table row).
    pub source: SourceClass,
    /// The derivative class (its table row).
    pub derivative: Derivative,
    /// The image.
    pub image: Image,
    /// What is asked of the image.
    pub shape: Shape,
}

/// An endless, reproducible sequence of requests.
#[derive(Debug)]
pub struct Schedule<'a> {
    rng: StdRng,
    dataset: &'a Dataset,
    classes: Vec<SourceClass>,
    mix: &'a Mix,
}

impl<'a> Schedule<'a> {
    /// The sequence of virtual user `user` for `seed`.
    ///
    /// # Panics
    ///
    /// When the dataset has no images (callers check that when they load it).
    pub fn new(dataset: &'a Dataset, mix: &'a Mix, seed: u64, user: u32) -> Schedule<'a> {
        let classes = dataset.classes();
        assert!(!classes.is_empty(), "the dataset has no images");
        // Spread the users' seeds with the golden-ratio constant so neighbouring users are unrelated.
        let user_seed = seed ^ u64::from(user).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Schedule {
            rng: StdRng::seed_from_u64(user_seed),
            dataset,
            classes,
            mix,
        }
    }

    /// The next request.
    pub fn next_request(&mut self) -> PlannedRequest {
        let source = self.classes[self.rng.gen_range(0..self.classes.len())];
        let images = self.dataset.images(source);
        let image = &images[self.rng.gen_range(0..images.len())];
        let derivative = self.mix.pick(self.rng.gen_range(0..self.mix.total()));
        let shape = match derivative {
            Derivative::Tile => Shape::Tile(random_tile(&mut self.rng, image.width, image.height)),
            Derivative::Thumb128 => Shape::Confined(THUMB_SIDE),
            Derivative::Render1024 => Shape::Confined(MEDIUM_SIDE),
            Derivative::Render3000To4096 => Shape::Confined(self.rng.gen_range(LARGE_SIDES)),
            Derivative::Full => Shape::Full,
        };
        PlannedRequest {
            source,
            derivative,
            image: image.clone(),
            shape,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dataset() -> Dataset {
        let mut dataset = Dataset::default();
        let image = |id: &str, width, height| Image {
            identifier: id.into(),
            width,
            height,
        };
        dataset.insert(
            SourceClass::Small,
            vec![image("s1", 2736, 1824), image("s2", 1000, 872)],
        );
        dataset.insert(SourceClass::Medium, vec![image("m1", 7680, 5120)]);
        dataset.insert(SourceClass::Large, vec![image("l1", 12288, 8192)]);
        dataset
    }

    #[test]
    fn the_same_seed_and_user_give_the_same_sequence() {
        let dataset = dataset();
        let mix = Mix::report();
        let take = |seed, user| {
            let mut schedule = Schedule::new(&dataset, &mix, seed, user);
            (0..200)
                .map(|_| schedule.next_request())
                .collect::<Vec<_>>()
        };
        assert_eq!(take(7, 3), take(7, 3));
        assert_ne!(take(7, 3), take(7, 4));
        assert_ne!(take(7, 3), take(8, 3));
    }

    #[test]
    fn the_derivative_shares_follow_the_weights() {
        let dataset = dataset();
        let mix = Mix::report();
        let mut schedule = Schedule::new(&dataset, &mix, 1, 0);
        let n = 121_000;
        let mut counts: BTreeMap<Derivative, u32> = BTreeMap::new();
        let mut sources: BTreeMap<SourceClass, u32> = BTreeMap::new();
        for _ in 0..n {
            let request = schedule.next_request();
            *counts.entry(request.derivative).or_default() += 1;
            *sources.entry(request.source).or_default() += 1;
        }
        // Expected 50000/50000/10000/10000/1000; the bounds are more than 5 standard deviations wide, so this
        // fails only when the weights are wrong, not by chance (and the seed is fixed anyway).
        let expect = |derivative, expected: f64| {
            let got = f64::from(counts[&derivative]);
            assert!(
                (got - expected).abs() < 5.0 * expected.sqrt() + 1.0,
                "{derivative}: {got} vs {expected}"
            );
        };
        expect(Derivative::Tile, 50_000.0);
        expect(Derivative::Thumb128, 50_000.0);
        expect(Derivative::Render1024, 10_000.0);
        expect(Derivative::Render3000To4096, 10_000.0);
        expect(Derivative::Full, 1_000.0);
        for class in SourceClass::ALL {
            let got = f64::from(sources[&class]);
            assert!((got - f64::from(n) / 3.0).abs() < 1000.0, "{class}: {got}");
        }
    }

    #[test]
    fn shapes_match_their_derivative_class() {
        let dataset = dataset();
        let mix = Mix::even();
        let mut schedule = Schedule::new(&dataset, &mix, 2, 9);
        for _ in 0..2000 {
            let request = schedule.next_request();
            assert_eq!(
                SourceClass::of_pixels(request.image.pixels()),
                request.source
            );
            match (request.derivative, request.shape) {
                (Derivative::Tile, Shape::Tile(tile)) => {
                    assert!(tile.region.x + tile.region.width <= request.image.width);
                    assert!(tile.region.y + tile.region.height <= request.image.height);
                }
                (Derivative::Thumb128, Shape::Confined(128)) => {}
                (Derivative::Render1024, Shape::Confined(1024)) => {}
                (Derivative::Render3000To4096, Shape::Confined(side)) => {
                    assert!(LARGE_SIDES.contains(&side));
                }
                (Derivative::Full, Shape::Full) => {}
                other => panic!("mismatch {other:?}"),
            }
        }
    }

    #[test]
    fn classes_without_images_are_never_drawn() {
        let mut only_large = Dataset::default();
        only_large.insert(
            SourceClass::Large,
            dataset().images(SourceClass::Large).to_vec(),
        );
        let mix = Mix::report();
        let mut schedule = Schedule::new(&only_large, &mix, 3, 0);
        assert!((0..500).all(|_| schedule.next_request().source == SourceClass::Large));
    }
}
