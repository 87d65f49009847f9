//! Deterministic train / valid / test assignment.
//!
//! An example's split is a function of its id (content hash) and the ratios only: adding examples
//! never moves old ones, and the same store always yields the same split.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    #[error("split ratios must be finite and ≥ 0 with a positive sum (got train {0}, valid {1}, test {2})")]
    BadRatios(f64, f64, f64),
}

/// Relative sizes of the splits (normalized by their sum). Default 0.9 / 0.05 / 0.05.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitRatios {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
}

impl Default for SplitRatios {
    fn default() -> Self {
        SplitRatios { train: 0.9, valid: 0.05, test: 0.05 }
    }
}

impl SplitRatios {
    pub fn new(train: f64, valid: f64, test: f64) -> Result<Self, SplitError> {
        let r = SplitRatios { train, valid, test };
        r.validate()?;
        Ok(r)
    }

    pub fn validate(&self) -> Result<(), SplitError> {
        let parts = [self.train, self.valid, self.test];
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) || parts.iter().sum::<f64>() <= 0.0 {
            return Err(SplitError::BadRatios(self.train, self.valid, self.test));
        }
        Ok(())
    }

    /// The split of the example with this id (normally its content hash). Ratios that fail
    /// [`SplitRatios::validate`] put everything in train.
    pub fn assign(&self, id: &str) -> Split {
        if self.validate().is_err() {
            return Split::Train;
        }
        let digest = Sha256::new().chain_update(b"brain-split-v1\0").chain_update(id.as_bytes()).finalize();
        let x = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        // A point in [0, 1) with 53 bits of precision.
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let total = self.train + self.valid + self.test;
        if u < self.train / total {
            Split::Train
        } else if u < (self.train + self.valid) / total {
            Split::Valid
        } else if self.test > 0.0 {
            Split::Test
        } else {
            Split::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_respected_and_validated() {
        let r = SplitRatios::default();
        let mut counts = [0usize; 3];
        for i in 0..20_000 {
            counts[r.assign(&format!("example-{i}")) as usize] += 1;
        }
        assert!((17_600..18_400).contains(&counts[0]), "{counts:?}");
        assert!((800..1_200).contains(&counts[1]), "{counts:?}");
        assert!((800..1_200).contains(&counts[2]), "{counts:?}");
        assert!(SplitRatios::new(-1.0, 0.0, 1.0).is_err());
        assert!(SplitRatios::new(0.0, 0.0, 0.0).is_err());
        assert!(SplitRatios::new(f64::NAN, 0.0, 1.0).is_err());
        let only_train = SplitRatios::new(1.0, 0.0, 0.0).unwrap();
        assert!((0..1000).all(|i| only_train.assign(&i.to_string()) == Split::Train));
        let no_test = SplitRatios::new(0.5, 0.5, 0.0).unwrap();
        assert!((0..1000).all(|i| no_test.assign(&i.to_string()) != Split::Test));
    }

    #[test]
    fn names_round_trip_through_serde() {
        assert_eq!(serde_json::to_string(&Split::Valid).unwrap(), "\"valid\"");
        assert_eq!(Split::Test.to_string(), "test");
    }
}
