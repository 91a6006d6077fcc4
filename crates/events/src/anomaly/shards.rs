//! A bounded map split over mutex-guarded shards, so that concurrent requests for different
//! keys rarely wait on one another and each holds its lock for a few counter updates.
//!
//! The shards' maps hash with SipHash and a random key (std's default): keys and IPs come from
//! outside, so a hash an attacker could collide is not an option there. The shard itself is
//! picked by a cheaper seeded multiply-fold hash: the worst an attacker who steered it could do
//! is crowd one shard's lock, and it saves a second SipHash on every call.
//! A new entry in a full shard first forgets the eighth of the shard seen longest ago: one
//! O(shard) pass per `capacity / 8` new entries, never a scan per insertion.
use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher, RandomState},
    sync::{Mutex, MutexGuard, PoisonError},
};

/// Most shards of one map.
const MAX_SHARDS: usize = 16;

/// An entry that knows when it was last used.
pub(super) trait Recency {
    fn last_seen_ms(&self) -> u64;
}

/// See the module documentation.
pub(super) struct Shards<K, V> {
    shards: Box<[Shard<K, V>]>,
    seed: u64,
}

struct Shard<K, V> {
    map: Mutex<HashMap<K, V>>,
    capacity: usize,
}

/// Locks a mutex; a panic of another holder leaves counters that are still usable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Hash + Eq, V: Recency> Shards<K, V> {
    /// A map of at most `max` entries (0 counts as 1); the shards' capacities add up to `max`.
    pub(super) fn new(max: usize) -> Self {
        let max = max.max(1);
        let count = max.min(MAX_SHARDS);
        let (base, extra) = (max / count, max % count);
        let shards = (0..count)
            .map(|i| Shard {
                map: Mutex::new(HashMap::new()),
                capacity: base + usize::from(i < extra),
            })
            .collect();
        Self {
            shards,
            seed: RandomState::new().hash_one(0x5eed_u64) | 1,
        }
    }

    /// Runs `f` on the entry of `key` under its shard's lock, first inserting `make()` if there
    /// is none (which may forget the oldest entries of a full shard). Nothing is allocated when
    /// the entry exists.
    pub(super) fn with<Q, R>(
        &self,
        key: &Q,
        make: impl FnOnce() -> (K, V),
        f: impl FnOnce(&mut V) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard(key);
        let mut map = lock(&shard.map);
        if let Some(v) = map.get_mut(key) {
            return f(v);
        }
        if map.len() >= shard.capacity {
            forget_oldest(&mut map, shard.capacity);
        }
        let (k, v) = make();
        f(map.entry(k).or_insert(v))
    }

    /// Runs `f` on every entry, one shard at a time; an entry for which it returns false is
    /// removed.
    pub(super) fn retain(&self, mut f: impl FnMut(&K, &mut V) -> bool) {
        for shard in &self.shards {
            let mut map = lock(&shard.map);
            map.retain(|k, v| f(k, v));
            // Give back the memory of a past flood.
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                let len = map.len();
                map.shrink_to(len * 2);
            }
        }
    }

    /// Entries held now.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.map).len()).sum()
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Shard<K, V> {
        // Multiply-shift maps the hash's high bits to an index.
        let mut h = FoldHasher {
            acc: 0,
            seed: self.seed,
        };
        key.hash(&mut h);
        let high = h.finish() >> 32;
        let index = (high * self.shards.len() as u64) >> 32;
        &self.shards[index as usize]
    }
}

/// The shard picker's hash: 8 bytes at a time, each mixed in by a folded multiply with the seed.
struct FoldHasher {
    acc: u64,
    seed: u64,
}

fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.acc = fold(self.acc ^ u64::from_le_bytes(word), self.seed);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Byte by byte: a short copy would be a call to memcpy.
            let word = rest
                .iter()
                .rev()
                .fold(0u64, |w, b| (w << 8) | u64::from(*b));
            self.acc = fold(self.acc ^ word, self.seed);
        }
        self.acc = self.acc.rotate_left(5) ^ bytes.len() as u64;
    }

    fn finish(&self) -> u64 {
        fold(self.acc ^ 0x9e37_79b9_7f4a_7c15, self.seed)
    }
}

/// Forgets at least an eighth of a full shard (at least one entry): those seen longest ago.
fn forget_oldest<K: Hash + Eq, V: Recency>(map: &mut HashMap<K, V>, capacity: usize) {
    let target = (capacity / 8).max(1).min(map.len());
    if target == 0 {
        return;
    }
    let mut seen: Vec<u64> = map.values().map(Recency::last_seen_ms).collect();
    let (_, cutoff, _) = seen.select_nth_unstable(target - 1);
    let cutoff = *cutoff;
    // Strictly older than the cutoff first, then as many at the cutoff as are still needed.
    let mut removed = 0;
    map.retain(|_, v| {
        let go = v.last_seen_ms() < cutoff;
        removed += usize::from(go);
        !go
    });
    map.retain(|_, v| {
        let go = removed < target && v.last_seen_ms() == cutoff;
        removed += usize::from(go);
        !go
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Recency for u64 {
        fn last_seen_ms(&self) -> u64 {
            *self
        }
    }

    #[test]
    fn capacities_add_up_and_the_oldest_go_first() {
        for max in [0, 1, 5, 16, 17, 1000] {
            let s = Shards::<u32, u64>::new(max);
            let total: usize = s.shards.iter().map(|s| s.capacity).sum();
            assert_eq!(total, max.max(1));
            assert!(s.shards.iter().all(|s| s.capacity >= 1));
        }
        let mut map: HashMap<u32, u64> = (0..16).map(|i| (i, u64::from(i % 4))).collect();
        forget_oldest(&mut map, 16);
        // 16 / 8 = 2 entries go, both last seen at 0.
        assert_eq!(map.len(), 14);
        assert_eq!(map.values().filter(|v| **v == 0).count(), 2);
        let s = Shards::<u32, u64>::new(40);
        for i in 0..1000u32 {
            s.with(&i, || (i, u64::from(i)), |v| *v += 0);
        }
        assert!(s.len() <= 40);
        assert_eq!(s.with(&999, || (999, 0), |v| *v), 999, "the newest stays");
        // Sequential keys spread over every shard.
        let s = Shards::<String, u64>::new(1600);
        for i in 0..1600 {
            let k = format!("key_{i:026}");
            s.with(k.as_str(), || (k.clone(), 0), |_| ());
        }
        for shard in s.shards.iter() {
            let n = lock(&shard.map).len();
            assert!((40..=100).contains(&n), "{n}");
        }
    }
}
