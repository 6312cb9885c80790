//! How big a value is: [`ValueSizes`], one size, a range or a weighted
//! list.

use std::fmt;
use std::str::FromStr;

use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;

/// Value sizes in bytes: `N`, `A-B` (inclusive, uniform) or a weighted list
/// `100:90,1000:9,100000:1` (size:weight).
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSizes {
    Fixed(usize),
    Range(usize, usize),
    Weighted {
        /// (size, weight) in the order given, for display.
        entries: Vec<(usize, u32)>,
        /// Built once so sampling is O(log n) without re-summing weights.
        index: WeightedIndex<u32>,
    },
}

impl ValueSizes {
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        match self {
            ValueSizes::Fixed(n) => *n,
            ValueSizes::Range(a, b) => rng.gen_range(*a..=*b),
            ValueSizes::Weighted { entries, index } => {
                // The index was built from `entries`, so it is in range;
                // `get` keeps that an invariant rather than a panic site.
                entries.get(index.sample(rng)).map_or(0, |e| e.0)
            }
        }
    }

    /// The largest size this can produce (for sizing buffers).
    pub fn max(&self) -> usize {
        match self {
            ValueSizes::Fixed(n) => *n,
            ValueSizes::Range(_, b) => *b,
            ValueSizes::Weighted { entries, .. } => entries
                .iter()
                .filter(|e| e.1 > 0)
                .map(|e| e.0)
                .max()
                .unwrap_or(0),
        }
    }
}

impl FromStr for ValueSizes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORMS: &str = "expected N, A-B or a weighted list like 100:90,1000:9,100000:1";
        let t = s.trim();
        let size = |v: &str| -> Result<usize, String> {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad size {v:?} in {s:?}: {FORMS}"))
        };
        if t.contains(':') {
            let mut entries = Vec::new();
            for part in t.split(',') {
                let (sz, w) = part
                    .split_once(':')
                    .ok_or_else(|| format!("bad entry {part:?} in {s:?}: {FORMS}"))?;
                let w: u32 = w
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad weight {w:?} in {s:?}: {FORMS}"))?;
                entries.push((size(sz)?, w));
            }
            let index = WeightedIndex::new(entries.iter().map(|e| e.1))
                .map_err(|_| format!("value sizes {s:?} need a positive total weight: {FORMS}"))?;
            Ok(ValueSizes::Weighted { entries, index })
        } else if let Some((a, b)) = t.split_once('-') {
            let (a, b) = (size(a)?, size(b)?);
            if a > b {
                return Err(format!("range {s:?} is empty (A > B): {FORMS}"));
            }
            Ok(ValueSizes::Range(a, b))
        } else {
            Ok(ValueSizes::Fixed(size(t)?))
        }
    }
}

impl fmt::Display for ValueSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSizes::Fixed(n) => write!(f, "{n}"),
            ValueSizes::Range(a, b) => write!(f, "{a}-{b}"),
            ValueSizes::Weighted { entries, .. } => {
                for (i, (sz, w)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{sz}:{w}")?;
                }
                Ok(())
            }
        }
    }
}
