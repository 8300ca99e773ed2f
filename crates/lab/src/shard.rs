//! Shards: a sweep split between independent runs that a cluster's own
//! scheduler starts (a Slurm job array, a Kubernetes indexed Job). Every
//! unit of work (a point of a sweep; in the report, also the E8 suite) has
//! a key built from what it is, never from where it runs, and the units
//! are dealt from those keys alone: every unit lands in exactly one shard,
//! the shards' sizes differ by at most one, and every machine deals the
//! same hand.

use std::fmt;
use std::hash::Hasher;
use std::str::FromStr;

/// Shard `index` of `count`, numbered from 0 as SLURM_ARRAY_TASK_ID and
/// JOB_COMPLETION_INDEX count (`--shard 0/4` .. `--shard 3/4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole sweep as one shard: what a run without `--shard` is.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `I/N` could not be read as a shard; the message says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardError(pub String);

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShardError {}

impl FromStr for Shard {
    type Err = ShardError;

    /// `I/N`, 0 <= I < N.
    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let bad = |why: &str| ShardError(format!("--shard `{text}`: {why}"));
        let (i, n) = text.split_once('/').ok_or_else(|| bad("not of the form I/N (e.g. 0/4)"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("I is not a whole number"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad(&format!("I must be below N (shards are numbered 0 to {})", count - 1)));
        }
        Ok(Shard { index, count })
    }
}

/// FNV-1a (64 bits) of `bytes`: a digest that names a definition in
/// manifests and orders the deal. It tells accidental differences apart;
/// it is no defence against a forged part (merge trusts its inputs).
pub fn digest64(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// A point's key: its axes in name order as `axis=value`, joined by `,`.
/// `\`, `,` and `=` inside a value are escaped with `\`, so distinct
/// points have distinct keys, whatever order the axes are listed in.
pub fn point_key(axes: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = axes.iter().collect();
    sorted.sort();
    let escape = |s: &str| s.replace('\\', "\\\\").replace(',', "\\,").replace('=', "\\=");
    sorted.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect::<Vec<_>>().join(",")
}

/// The indices (ascending) of the units of `keys` that shard `shard`
/// holds. The units are ordered by the digest of their keys and dealt
/// round-robin: neighbours in a sweep (often alike in cost, e.g. every
/// point of the slow profile) spread over the shards instead of filling
/// one.
pub fn deal(keys: &[String], shard: Shard) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| (digest64(keys[i].as_bytes()), i));
    let mut mine: Vec<usize> =
        order.into_iter().enumerate().filter(|(rank, _)| rank % shard.count == shard.index).map(|(_, i)| i).collect();
    mine.sort_unstable();
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_mistakes_say_why() {
        assert_eq!("2/7".parse(), Ok(Shard { index: 2, count: 7 }));
        assert_eq!(Shard { index: 2, count: 7 }.to_string(), "2/7");
        let err = |t: &str| t.parse::<Shard>().unwrap_err().0;
        assert_eq!(err("4/4"), "--shard `4/4`: I must be below N (shards are numbered 0 to 3)");
        assert_eq!(err("0/0"), "--shard `0/0`: N must be at least 1");
        assert_eq!(err("3"), "--shard `3`: not of the form I/N (e.g. 0/4)");
        assert_eq!(err("a/4"), "--shard `a/4`: I is not a whole number");
        assert_eq!(err("1/-4"), "--shard `1/-4`: N is not a whole number");
    }

    #[test]
    fn every_unit_lands_in_exactly_one_shard_and_shards_are_even() {
        let keys: Vec<String> = (0..101).map(|i| format!("p={i},profile=legacy")).collect();
        for count in [1, 2, 3, 7, 101, 150] {
            let mut seen = vec![0; keys.len()];
            let mut sizes = Vec::new();
            for index in 0..count {
                let mine = deal(&keys, Shard { index, count });
                assert!(mine.windows(2).all(|w| w[0] < w[1]));
                sizes.push(mine.len());
                for i in mine {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards: {seen:?}");
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{count} shards: {sizes:?}");
        }
        assert_eq!(deal(&keys, Shard::WHOLE), (0..101).collect::<Vec<_>>());
    }

    #[test]
    fn the_deal_depends_on_the_keys_alone_and_mixes_neighbours() {
        // FNV-1a 64's published test vectors (draft-eastlake-fnv).
        assert_eq!(digest64(b""), 0xcbf29ce484222325);
        assert_eq!(digest64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(digest64(b"foobar"), 0x85944171f73967e8);
        let keys: Vec<String> =
            (0..22).map(|i| format!("p={},profile={}", i / 2, ["legacy", "modern"][i % 2])).collect();
        let half = deal(&keys, Shard { index: 0, count: 2 });
        // Not every legacy point in one shard, as plain round-robin would do.
        assert!(half.iter().any(|i| i % 2 == 0) && half.iter().any(|i| i % 2 == 1), "{half:?}");
        assert_eq!(half, deal(&keys.clone(), Shard { index: 0, count: 2 }));
    }

    #[test]
    fn keys_are_distinct_and_ignore_axis_order() {
        let a = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(point_key(&a(&[("profile", "legacy"), ("p", "0.0")])), "p=0.0,profile=legacy");
        assert_eq!(point_key(&a(&[("p", "0.0"), ("profile", "legacy")])), "p=0.0,profile=legacy");
        assert_ne!(point_key(&a(&[("x", "1,y=2")])), point_key(&a(&[("x", "1"), ("y", "2")])));
        assert_eq!(point_key(&a(&[("x", "a\\b")])), "x=a\\\\b");
        assert_eq!(point_key(&[]), "");
    }
}
