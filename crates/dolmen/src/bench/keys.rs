//! Which key a bench operation touches: the key names, a per-client xorshift generator, the
//! uniform or zipfian distribution over `0..n` (YCSB's generator after Gray et al., "Quickly
//! generating billion-record synthetic databases", theta 0.99; key 0 is the hottest), and the
//! pair of keys a transaction touches, by quarter of the key space for the sharded workloads.

/// The name of key number `i` (zero-padded so numeric order is byte order, for `scan` and for
/// split keys).
pub fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:012}").into_bytes()
}

/// How many parts `Pair` cuts the key space into: a cluster split at keys `n/4`, `n/2` and
/// `3n/4` (`--keys 10000`: `bench/000000002500,bench/000000005000,bench/000000007500`) has one
/// data group per quarter.
pub const QUARTERS: u64 = 4;

/// The quarter of key `i` of `0..n`: `i * 4 / n`.
pub fn quarter(i: u64, n: u64) -> u64 {
    (u128::from(i) * u128::from(QUARTERS) / u128::from(n.max(1))) as u64
}

/// The keys of quarter `q` of `0..n` (empty for some quarters when `n < 4`).
fn quarter_keys(q: u64, n: u64) -> std::ops::Range<u64> {
    let bound = |q: u64| (u128::from(q) * u128::from(n)).div_ceil(u128::from(QUARTERS)) as u64;
    bound(q)..bound(q + 1)
}

/// Where a transaction's second key is, relative to its first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pair {
    /// Anywhere: drawn like the first, bumped to the next key if it is the same (`txn`).
    Any,
    /// Another key of the first key's quarter, uniform (`txn-local`).
    SameQuarter,
    /// A key of another quarter: the quarter uniform among the three others, the key uniform in
    /// it (`txn-cross`; needs `n >= 4`, so that no quarter is empty).
    OtherQuarter,
}

/// A small deterministic generator (xorshift64), one per client: no shared state in the loop.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; zero is remapped, xorshift has no zero state).
    pub fn new(seed: u64) -> Self {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How keys are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Zipfian, theta 0.99 (YCSB's default): a few hot keys get most operations.
    Zipfian,
}

/// YCSB's zipfian generator over `0..n`: the constants are computed once (O(n)), each draw is
/// O(1).
#[derive(Clone, Copy, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// YCSB's default skew.
    pub const THETA: f64 = 0.99;

    /// A generator over `0..n` (`n` of 0 is taken as 1) with skew `theta` in `(0, 1)`.
    pub fn new(n: u64, theta: f64) -> Self {
        let n = n.max(1);
        let zeta = |m: u64| (1..=m).map(|i| (i as f64).powf(-theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// One draw in `0..n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let v = self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        (v as u64).min(self.n - 1)
    }
}

/// The key chooser shared (by copy) by all clients of a run.
#[derive(Clone, Copy, Debug)]
pub enum Keys {
    /// Uniform over `0..n`.
    Uniform(u64),
    /// Zipfian over `0..n`.
    Zipfian(Zipfian),
}

impl Keys {
    /// A chooser over `0..n` (`n` of 0 is taken as 1).
    pub fn new(distribution: Distribution, n: u64) -> Self {
        match distribution {
            Distribution::Uniform => Keys::Uniform(n.max(1)),
            Distribution::Zipfian => Keys::Zipfian(Zipfian::new(n, Zipfian::THETA)),
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> u64 {
        match self {
            Keys::Uniform(n) => *n,
            Keys::Zipfian(z) => z.n,
        }
    }

    /// One key number in `0..len()`.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        match self {
            Keys::Uniform(n) => rng.next_u64() % n,
            Keys::Zipfian(z) => z.sample(rng),
        }
    }

    /// The two keys of a transaction: the first from the distribution, the second as `pair`
    /// says. Distinct unless there is no other key to take (one key; a quarter of one key).
    pub fn pair(&self, rng: &mut Rng, pair: Pair) -> (u64, u64) {
        let n = self.len();
        let first = self.next(rng);
        let second = match pair {
            Pair::Any => {
                let second = self.next(rng);
                if second == first && n > 1 {
                    (first + 1) % n
                } else {
                    second
                }
            }
            Pair::SameQuarter => {
                let keys = quarter_keys(quarter(first, n), n);
                let size = keys.end - keys.start;
                if size < 2 {
                    first
                } else {
                    // One of the quarter's other `size - 1` keys, counted on from `first`.
                    let step = 1 + rng.next_u64() % (size - 1);
                    keys.start + (first - keys.start + step) % size
                }
            }
            Pair::OtherQuarter => {
                let other = (quarter(first, n) + 1 + rng.next_u64() % (QUARTERS - 1)) % QUARTERS;
                let keys = quarter_keys(other, n);
                (keys.start + rng.next_u64() % (keys.end - keys.start).max(1)).min(n - 1)
            }
        };
        (first, second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(keys: Keys, draws: usize) -> Vec<usize> {
        let mut rng = Rng::new(42);
        let mut counts = vec![0usize; keys.len() as usize];
        for _ in 0..draws {
            let k = keys.next(&mut rng);
            assert!(k < keys.len(), "draw {k} out of 0..{}", keys.len());
            counts[k as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipfian_values_stay_in_range() {
        for n in [1, 2, 3, 10, 1000] {
            counts(Keys::new(Distribution::Zipfian, n), 20_000);
        }
    }

    #[test]
    fn zipfian_is_skewed_towards_key_zero() {
        let (n, draws) = (1000, 100_000);
        let c = counts(Keys::new(Distribution::Zipfian, n), draws);
        let hottest = c.iter().copied().max().unwrap_or(0);
        // Uniform would give each key ~1/n of the draws; zipfian(0.99) gives key 0 ~13%.
        assert_eq!(c[0], hottest, "key 0 is the hottest");
        assert!(hottest > 50 * draws / n as usize, "hottest got {hottest}");
        assert!(
            c.iter().filter(|&&x| x > 0).count() > 500,
            "the tail is reached"
        );
    }

    /// Both distributions over the bench's 10,000 keys, and uniform over each of `small`.
    fn choosers(small: &[u64]) -> Vec<Keys> {
        let mut all = vec![
            Keys::new(Distribution::Uniform, 10_000),
            Keys::new(Distribution::Zipfian, 10_000),
        ];
        all.extend(small.iter().map(|&n| Keys::new(Distribution::Uniform, n)));
        all
    }

    /// `draws` pairs from a generator seeded with 9.
    fn pairs(keys: Keys, pair: Pair, draws: usize) -> Vec<(u64, u64)> {
        let mut rng = Rng::new(9);
        (0..draws).map(|_| keys.pair(&mut rng, pair)).collect()
    }

    #[test]
    fn quarters_cut_the_bench_keys_at_the_documented_split_keys() {
        let n = 10_000;
        let firsts: Vec<u64> = (0..n)
            .filter(|&i| i == 0 || quarter(i, n) != quarter(i - 1, n))
            .collect();
        assert_eq!(firsts, [0, 2500, 5000, 7500]);
        assert_eq!(key(2500), b"bench/000000002500");
        for n in [4, 5, 7, 10, 1001] {
            let mut covered = 0;
            for q in 0..QUARTERS {
                let keys = quarter_keys(q, n);
                assert!(!keys.is_empty(), "n {n}: quarter {q} is empty");
                assert_eq!(keys.start, covered, "n {n}: quarter {q} starts after a gap");
                assert!(
                    keys.clone().all(|i| quarter(i, n) == q),
                    "n {n}: quarter {q}"
                );
                covered = keys.end;
            }
            assert_eq!(covered, n);
        }
    }

    #[test]
    fn cross_pairs_are_always_in_different_quarters() {
        for keys in choosers(&[4, 7]) {
            let n = keys.len();
            let drawn = pairs(keys, Pair::OtherQuarter, 20_000);
            let mut reached = [[false; QUARTERS as usize]; QUARTERS as usize];
            for &(a, b) in &drawn {
                assert!(a < n && b < n, "{a}, {b} out of 0..{n}");
                let (qa, qb) = (quarter(a, n), quarter(b, n));
                assert_ne!(qa, qb, "keys {a} and {b} of {n} share a quarter");
                reached[qa as usize][qb as usize] = true;
            }
            for (qa, row) in reached.iter().enumerate() {
                for (qb, &hit) in row.iter().enumerate() {
                    assert_eq!(hit, qa != qb, "n {n}: quarters {qa} -> {qb}");
                }
            }
        }
    }

    #[test]
    fn local_pairs_are_two_keys_of_one_quarter() {
        for keys in choosers(&[8]) {
            let n = keys.len();
            for (a, b) in pairs(keys, Pair::SameQuarter, 20_000) {
                assert!(a < n && b < n, "{a}, {b} out of 0..{n}");
                assert_ne!(a, b);
                assert_eq!(quarter(a, n), quarter(b, n), "keys {a} and {b} of {n}");
            }
        }
        // A quarter of one key: the same key twice rather than another quarter's.
        assert!(
            pairs(Keys::new(Distribution::Uniform, 4), Pair::SameQuarter, 100)
                .iter()
                .all(|&(a, b)| a == b)
        );
    }

    #[test]
    fn pairs_are_deterministic_for_a_seed_and_any_keeps_txn_draws() {
        let keys = Keys::new(Distribution::Uniform, 10_000);
        for pair in [Pair::Any, Pair::SameQuarter, Pair::OtherQuarter] {
            assert_eq!(pairs(keys, pair, 1000), pairs(keys, pair, 1000), "{pair:?}");
        }
        // `Any` draws both keys from the distribution, as `txn` always did.
        let mut rng = Rng::new(9);
        let (a, b) = (keys.next(&mut rng), keys.next(&mut rng));
        assert_eq!(pairs(keys, Pair::Any, 1), [(a, b)]);
        let spread = pairs(keys, Pair::Any, 20_000);
        assert!(spread.iter().all(|&(a, b)| a != b));
        let cross = spread
            .iter()
            .filter(|&&(a, b)| quarter(a, 10_000) != quarter(b, 10_000))
            .count();
        // Three quarters of random pairs reach two quarters: why `txn` is no single-shard figure.
        assert!((14_000..16_000).contains(&cross), "{cross}");
    }

    #[test]
    fn uniform_is_flat() {
        let (n, draws) = (100, 100_000);
        let c = counts(Keys::new(Distribution::Uniform, n), draws);
        let expected = draws / n as usize;
        assert!(
            c.iter().all(|&x| x > expected / 2 && x < expected * 2),
            "{c:?}"
        );
    }
}
