//! Seeded random streams. Every random draw of a run comes from a stream derived from
//! (run seed, purpose, epoch, item), so a run resumed at an epoch boundary draws exactly what the
//! uninterrupted run would have, whatever the thread scheduling.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub type SamixRng = ChaCha8Rng;

/// What a stream is used for; keeps streams of different purposes independent.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Stream {
    Shuffle = 1,
    Augment = 2,
    Mix = 3,
    Init = 4,
    Visual = 5,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator for `(seed, purpose, epoch, item)`.
pub fn stream(seed: u64, purpose: Stream, epoch: u64, item: u64) -> SamixRng {
    let mut h = splitmix64(seed);
    for v in [purpose as u64, epoch, item] {
        h = splitmix64(h ^ v);
    }
    ChaCha8Rng::seed_from_u64(h)
}
