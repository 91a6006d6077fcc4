//! A bounded, sharded map from keys to small states that expire: the storage of both the
//! limiter and the failure tracker.
//!
//! The map holds at most `max_keys` entries, split over up to [`MAX_SHARDS`] shards (each behind
//! its own mutex) whose capacities add up to exactly `max_keys`. A new key in a full shard first
//! drops that shard's idle entries (expired: the same as no state), and if none was idle, the
//! entry that expires first (the one closest to idle). Making room scans the shard, so it costs
//! O(max_keys / shards) — only when a shard is full; size `max_keys` above the expected number
//! of active keys and call `evict_idle` periodically to keep it rare.
use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
};

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use crate::Nanos;

/// Most shards of one map (fewer when `max_keys` is smaller, so no shard has capacity 0).
pub(crate) const MAX_SHARDS: usize = 16;

/// A state that is the same as no state once `now >= expires_at()`.
pub(crate) trait Expiring: Copy {
    fn expires_at(&self) -> Nanos;
}

/// See the module documentation.
pub(crate) struct ShardedMap<K, V> {
    shards: Box<[Shard<K, V>]>,
    /// foldhash's quality variant: its final avalanche spreads even sequential integer keys
    /// evenly over the shards (the fast variant left some shards short).
    hasher: foldhash::quality::RandomState,
    max_keys: usize,
}

struct Shard<K, V> {
    entries: Mutex<HashMap<K, V, RandomState>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Expiring> ShardedMap<K, V> {
    /// A map of at most `max_keys` entries (0 counts as 1).
    pub(crate) fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let count = max_keys.min(MAX_SHARDS);
        let (base, extra) = (max_keys / count, max_keys % count);
        let shards = (0..count)
            .map(|i| Shard {
                entries: Mutex::new(HashMap::with_hasher(RandomState::default())),
                capacity: base + usize::from(i < extra),
            })
            .collect();
        ShardedMap {
            shards,
            hasher: foldhash::quality::RandomState::default(),
            max_keys,
        }
    }

    /// A copy of `key`'s state.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.shard(key).entries.lock().get(key).copied()
    }

    /// Runs `f` on `key`'s state under the shard's lock; `f` returns the state to store (None:
    /// leave it as it is) and the result. Storing a new key makes room first.
    pub(crate) fn update<R>(
        &self,
        key: &K,
        now: Nanos,
        f: impl FnOnce(Option<V>) -> (Option<V>, R),
    ) -> R {
        let shard = self.shard(key);
        let mut entries = shard.entries.lock();
        if let Some(slot) = entries.get_mut(key) {
            let (new, result) = f(Some(*slot));
            if let Some(state) = new {
                *slot = state;
            }
            return result;
        }
        let (new, result) = f(None);
        if let Some(state) = new {
            make_room(&mut entries, shard.capacity, now);
            entries.insert(key.clone(), state);
        }
        result
    }

    /// Removes every entry that is idle at `now`; returns how many.
    pub(crate) fn evict_idle(&self, now: Nanos) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut entries = shard.entries.lock();
            let before = entries.len();
            entries.retain(|_, state| state.expires_at() > now);
            let after = entries.len();
            removed += before - after;
            // Give back the memory of a past flood.
            if entries.capacity() > 64 && after < entries.capacity() / 4 {
                entries.shrink_to(after * 2);
            }
        }
        removed
    }

    fn shard(&self, key: &K) -> &Shard<K, V> {
        // The shard hasher is independent of the shards' own hashers, so keys of one shard
        // still spread over all of its buckets. Multiply-shift maps the hash's high bits to
        // an index.
        let high = self.hasher.hash_one(key) >> 32;
        let index = (high * self.shards.len() as u64) >> 32;
        &self.shards[index as usize]
    }
}

impl<K, V> ShardedMap<K, V> {
    /// The bound on the number of entries.
    pub(crate) fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Entries held now (idle ones included until they are evicted).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.entries.lock().len()).sum()
    }
}

/// Brings `entries` below `capacity`: idle entries first, then the one that expires first.
fn make_room<K: Hash + Eq + Clone, V: Expiring>(
    entries: &mut HashMap<K, V, RandomState>,
    capacity: usize,
    now: Nanos,
) {
    if entries.len() < capacity {
        return;
    }
    entries.retain(|_, state| state.expires_at() > now);
    while entries.len() >= capacity {
        let soonest = entries
            .iter()
            .min_by_key(|(_, state)| state.expires_at())
            .map(|(key, _)| key.clone());
        match soonest {
            Some(key) => entries.remove(&key),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(map: &ShardedMap<u32, Nanos>, key: u32, expires: Nanos, now: Nanos) {
        map.update(&key, now, |_| (Some(expires), ()));
    }

    #[test]
    fn capacities_add_up_to_max_keys() {
        for max_keys in [0, 1, 5, 16, 17, 100, 1_000_003] {
            let map = ShardedMap::<u32, Nanos>::new(max_keys);
            let total: usize = map.shards.iter().map(|s| s.capacity).sum();
            assert_eq!(total, max_keys.max(1));
            assert_eq!(map.max_keys(), max_keys.max(1));
            assert!(map.shards.iter().all(|s| s.capacity >= 1));
            assert!(map.shards.len() <= MAX_SHARDS);
        }
    }

    #[test]
    fn full_shard_drops_idle_entries_then_the_soonest() {
        // One shard of three.
        let map = ShardedMap::<u32, Nanos>::new(3);
        assert_eq!(map.shards.len(), 3);
        let map = ShardedMap::<u32, Nanos> {
            shards: vec![Shard {
                entries: Mutex::new(HashMap::with_hasher(RandomState::default())),
                capacity: 3,
            }]
            .into(),
            ..map
        };
        put(&map, 1, 50, 0);
        put(&map, 2, 30, 0);
        put(&map, 3, 70, 0);
        // Nothing idle at 10: the entry expiring first (2) goes.
        put(&map, 4, 90, 10);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&2), None);
        // At 60 key 1 (50) is idle, key 3 (70) is not: only 1 goes.
        put(&map, 5, 100, 60);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&1), None);
        assert_eq!(map.get(&3), Some(70));
        // Updating an existing key never evicts.
        put(&map, 3, 80, 60);
        assert_eq!((map.len(), map.get(&3)), (3, Some(80)));
        assert_eq!(map.evict_idle(85), 1);
        assert_eq!(map.evict_idle(85), 0);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn leaving_state_untouched_stores_nothing() {
        let map = ShardedMap::<u32, Nanos>::new(10);
        let seen = map.update(&7, 0, |state| (None, state));
        assert_eq!(seen, None);
        assert_eq!(map.len(), 0);
    }
}
