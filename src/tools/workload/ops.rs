//! Which command is sent: [`Op`], and the weighted mix [`Mix`] they are
//! drawn from.

use std::fmt;
use std::str::FromStr;

use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;

/// A command `blast` can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Get,
    MultiGet,
    Gets,
    Cas,
    Incr,
    Decr,
    Delete,
    Touch,
    Gat,
    /// The meta get `mg <key> v f t` (text only): value, flags and TTL.
    MetaGet,
}

impl Op {
    /// Every op, in a fixed order (reports list them in this order).
    pub const ALL: [Op; 15] = [
        Op::Set,
        Op::Add,
        Op::Replace,
        Op::Append,
        Op::Prepend,
        Op::Get,
        Op::MultiGet,
        Op::Gets,
        Op::Cas,
        Op::Incr,
        Op::Decr,
        Op::Delete,
        Op::Touch,
        Op::Gat,
        Op::MetaGet,
    ];

    /// Lowercase name, as accepted by `--mix` and shown in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Add => "add",
            Op::Replace => "replace",
            Op::Append => "append",
            Op::Prepend => "prepend",
            Op::Get => "get",
            Op::MultiGet => "multiget",
            Op::Gets => "gets",
            Op::Cas => "cas",
            Op::Incr => "incr",
            Op::Decr => "decr",
            Op::Delete => "delete",
            Op::Touch => "touch",
            Op::Gat => "gat",
            Op::MetaGet => "mg",
        }
    }

    fn valid_names() -> String {
        Op::ALL.iter().map(Op::name).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        // The issue spells it "multi-get"; accept that as well.
        let t = if t == "multi-get" { "multiget" } else { &t };
        Op::ALL
            .iter()
            .copied()
            .find(|op| op.name() == t)
            .ok_or_else(|| {
                format!(
                    "unknown command {s:?}; valid commands: {}",
                    Op::valid_names()
                )
            })
    }
}

/// A weighted command mix, `get=80,set=20,...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// (op, weight) in the order given, zero weights included.
    entries: Vec<(Op, u32)>,
    index: WeightedIndex<u32>,
}

impl Mix {
    pub fn sample(&self, rng: &mut impl Rng) -> Op {
        // The index was built from `entries`; `get` keeps that an invariant
        // rather than a panic site.
        self.entries
            .get(self.index.sample(rng))
            .map_or(Op::Get, |e| e.0)
    }

    /// Ops with a positive weight, in the order given.
    pub fn ops(&self) -> Vec<Op> {
        self.entries
            .iter()
            .filter(|e| e.1 > 0)
            .map(|e| e.0)
            .collect()
    }

    /// Weight of `op` (0 if absent).
    pub fn weight(&self, op: Op) -> u32 {
        self.entries.iter().find(|e| e.0 == op).map_or(0, |e| e.1)
    }

    /// (op, weight) pairs as given.
    pub fn entries(&self) -> &[(Op, u32)] {
        &self.entries
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut entries: Vec<(Op, u32)> = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, w) = part.split_once('=').ok_or_else(|| {
                format!("bad mix entry {part:?} in {s:?}: expected name=weight, e.g. get=80,set=20")
            })?;
            let op: Op = name.parse()?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("bad weight {w:?} for {op} in mix {s:?}"))?;
            // A repeated name is almost certainly a typo for another one.
            if entries.iter().any(|e| e.0 == op) {
                return Err(format!("{op} appears twice in mix {s:?}"));
            }
            entries.push((op, w));
        }
        let index = WeightedIndex::new(entries.iter().map(|e| e.1)).map_err(|_| {
            format!(
                "mix {s:?} needs at least one command with a positive weight \
                 (e.g. get=80,set=20); valid commands: {}",
                Op::valid_names()
            )
        })?;
        Ok(Mix { entries, index })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, w)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}={w}")?;
        }
        Ok(())
    }
}
