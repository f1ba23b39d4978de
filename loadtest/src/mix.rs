//! The derivative classes and how often each is requested.
//!
//! The report's Locust client asked, per identifier, for "50 thumbnails of 128 pixels on the longer side, 10
//! images of 3000 pixels on the longer side, 1 image at native size" (§3.2.4), and its tables add renders of
//! 1024 px and random viewer-style tiles. The tables show about as many tiles as thumbnails, so the default mix
//! ([`Mix::report`]) is, per identifier: 50 tiles, 50 thumbnails, 10 renders of 1024 px, 10 of 3000-4096 px and
//! 1 full-size image. Each request draws its derivative class independently with these weights, which gives
//! the same proportions in expectation.

use std::fmt;

/// A derivative class (the table's `derv sz` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Derivative {
    /// A viewer-style 256-px tile at a random pyramid level.
    Tile,
    /// `!128,128`: a thumbnail of 128 px on the long side.
    Thumb128,
    /// `!1024,1024`.
    Render1024,
    /// `!N,N` with N uniform in 3000..=4096.
    Render3000To4096,
    /// The whole image at full size (or at the servers' maximum size when it is larger).
    Full,
}

impl Derivative {
    /// Every class, in table order.
    pub const ALL: [Derivative; 5] = [
        Derivative::Tile,
        Derivative::Thumb128,
        Derivative::Render1024,
        Derivative::Render3000To4096,
        Derivative::Full,
    ];

    /// The label in tables and in `--mix`.
    pub fn label(self) -> &'static str {
        match self {
            Derivative::Tile => "tile",
            Derivative::Thumb128 => "128",
            Derivative::Render1024 => "1024",
            Derivative::Render3000To4096 => "3000-4096",
            Derivative::Full => "full",
        }
    }

    /// Parses [`Derivative::label`]; `4096` (the report's label) and `thumb` are accepted too.
    pub fn from_label(label: &str) -> Option<Derivative> {
        match label {
            "thumb" => Some(Derivative::Thumb128),
            "4096" => Some(Derivative::Render3000To4096),
            _ => Derivative::ALL
                .into_iter()
                .find(|derivative| derivative.label() == label),
        }
    }

    fn index(self) -> usize {
        Derivative::ALL
            .iter()
            .position(|derivative| *derivative == self)
            .expect("ALL lists every variant")
    }
}

impl fmt::Display for Derivative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An invalid `--mix` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MixError {
    /// Neither a preset nor a `class=weight` list.
    #[error("invalid mix item {0:?}: expected `report`, `even` or a list like `tile=50,128=50,1024=10,3000-4096=10,full=1`")]
    Syntax(String),
    /// A class name that does not exist.
    #[error("unknown derivative class {0:?} (known: tile, 128, 1024, 3000-4096, full)")]
    UnknownClass(String),
    /// The same class twice.
    #[error("derivative class {0} is given twice")]
    Duplicate(Derivative),
    /// Every weight is zero.
    #[error("every weight is zero: nothing would be requested")]
    AllZero,
}

/// Relative weights of the derivative classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 5],
}

impl Mix {
    /// The report's per-identifier mix (see the module documentation).
    pub fn report() -> Mix {
        Mix::from_pairs(&[
            (Derivative::Tile, 50),
            (Derivative::Thumb128, 50),
            (Derivative::Render1024, 10),
            (Derivative::Render3000To4096, 10),
            (Derivative::Full, 1),
        ])
    }

    /// Every class equally often: short runs (the smoke test) then see every class.
    pub fn even() -> Mix {
        Mix { weights: [1; 5] }
    }

    fn from_pairs(pairs: &[(Derivative, u32)]) -> Mix {
        let mut weights = [0; 5];
        for (derivative, weight) in pairs {
            weights[derivative.index()] = *weight;
        }
        Mix { weights }
    }

    /// Parses `report`, `even`, or `class=weight,...` (classes left out get weight 0).
    ///
    /// # Errors
    ///
    /// A malformed item, an unknown or repeated class, or weights that are all zero.
    pub fn parse(text: &str) -> Result<Mix, MixError> {
        match text.trim() {
            "report" => return Ok(Mix::report()),
            "even" => return Ok(Mix::even()),
            _ => {}
        }
        let mut weights = [0; 5];
        let mut seen = [false; 5];
        for item in text.split(',') {
            let item = item.trim();
            let Some((name, weight)) = item.split_once('=') else {
                return Err(MixError::Syntax(item.to_string()));
            };
            let derivative = Derivative::from_label(name.trim())
                .ok_or_else(|| MixError::UnknownClass(name.trim().to_string()))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| MixError::Syntax(item.to_string()))?;
            let index = derivative.index();
            if seen[index] {
                return Err(MixError::Duplicate(derivative));
            }
            seen[index] = true;
            weights[index] = weight;
        }
        // Weights are bounded by u32; their sum is taken in u64 so a huge weight cannot overflow.
        if weights.iter().all(|weight| *weight == 0) {
            return Err(MixError::AllZero);
        }
        Ok(Mix { weights })
    }

    /// The weight of `derivative`.
    pub fn weight(&self, derivative: Derivative) -> u32 {
        self.weights[derivative.index()]
    }

    /// The sum of all weights.
    pub fn total(&self) -> u64 {
        self.weights.iter().map(|weight| u64::from(*weight)).sum()
    }

    /// The classes with a weight above zero, in table order.
    pub fn active(&self) -> Vec<Derivative> {
        Derivative::ALL
            .into_iter()
            .filter(|derivative| self.weight(*derivative) > 0)
            .collect()
    }

    /// The class that `roll` (uniform in `0..total()`) selects: each class owns a run of `weight` values.
    ///
    /// # Panics
    ///
    /// When `roll >= total()`.
    pub fn pick(&self, roll: u64) -> Derivative {
        let mut remaining = roll;
        for derivative in Derivative::ALL {
            let weight = u64::from(self.weight(derivative));
            if remaining < weight {
                return derivative;
            }
            remaining -= weight;
        }
        panic!("roll {roll} is not below the mix total {}", self.total());
    }

    /// One line for the report, e.g. `tile 50 (41.3%), 128 50 (41.3%), …`.
    pub fn describe(&self) -> String {
        let total = self.total() as f64;
        self.active()
            .into_iter()
            .map(|derivative| {
                let weight = self.weight(derivative);
                format!(
                    "{derivative} {weight} ({:.1}%)",
                    100.0 * f64::from(weight) / total
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_mix_is_50_50_10_10_1() {
        let mix = Mix::report();
        let weights: Vec<u32> = Derivative::ALL.into_iter().map(|d| mix.weight(d)).collect();
        assert_eq!(weights, vec![50, 50, 10, 10, 1]);
        assert_eq!(mix.total(), 121);
        assert_eq!(
            mix.describe(),
            "tile 50 (41.3%), 128 50 (41.3%), 1024 10 (8.3%), 3000-4096 10 (8.3%), full 1 (0.8%)"
        );
    }

    #[test]
    fn pick_gives_each_class_exactly_its_weight_of_the_rolls() {
        let mix = Mix::report();
        let mut counts = [0u32; 5];
        for roll in 0..mix.total() {
            counts[mix.pick(roll).index()] += 1;
        }
        assert_eq!(counts, [50, 50, 10, 10, 1]);
    }

    #[test]
    #[should_panic(expected = "not below the mix total")]
    fn pick_refuses_a_roll_past_the_total() {
        Mix::report().pick(121);
    }

    #[test]
    fn parses_presets_and_lists() {
        assert_eq!(Mix::parse("report"), Ok(Mix::report()));
        assert_eq!(Mix::parse("even"), Ok(Mix::even()));
        let mix = Mix::parse("tile=3, 4096=2,thumb=1").unwrap();
        assert_eq!(mix.weight(Derivative::Tile), 3);
        assert_eq!(mix.weight(Derivative::Render3000To4096), 2);
        assert_eq!(mix.weight(Derivative::Thumb128), 1);
        assert_eq!(mix.weight(Derivative::Full), 0);
        assert_eq!(
            mix.active(),
            vec![
                Derivative::Tile,
                Derivative::Thumb128,
                Derivative::Render3000To4096
            ]
        );
    }

    #[test]
    fn rejects_bad_mixes() {
        assert_eq!(Mix::parse("tile"), Err(MixError::Syntax("tile".into())));
        assert_eq!(Mix::parse("tile=x"), Err(MixError::Syntax("tile=x".into())));
        assert_eq!(
            Mix::parse("huge=1"),
            Err(MixError::UnknownClass("huge".into()))
        );
        assert_eq!(
            Mix::parse("128=1,thumb=2"),
            Err(MixError::Duplicate(Derivative::Thumb128))
        );
        assert_eq!(Mix::parse("tile=0,full=0"), Err(MixError::AllZero));
    }

    #[test]
    fn labels_read_back() {
        for derivative in Derivative::ALL {
            assert_eq!(Derivative::from_label(derivative.label()), Some(derivative));
        }
    }
}
