//! Which key a bench operation touches: the key names, a per-client xorshift generator, and the
//! uniform or zipfian distribution over `0..n` (YCSB's generator after Gray et al., "Quickly
//! generating billion-record synthetic databases", theta 0.99; key 0 is the hottest).

/// The name of key number `i` (zero-padded so numeric order is byte order, for `scan`).
pub fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:012}").into_bytes()
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
