//! Caps on open connections: in all, and per client address (an IPv6 /64 is one address, as a
//! client holding one has 2^64 of them). A connection over a cap is closed as soon as it is
//! accepted; refusals are counted and logged at most once per interval per listener.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Why a connection was refused (the `reason` label of the refusal metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener has `max_connections` open.
    Total,
    /// The client's address has `max_connections_per_address` open.
    PerAddress,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerAddress => "max_connections_per_address",
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The open connections of one listener.
#[derive(Debug, Clone)]
pub struct Caps {
    open: Arc<Mutex<Open>>,
    max_total: usize,
    max_per_address: usize,
}

/// One open connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    open: Arc<Mutex<Open>>,
    key: IpAddr,
}

impl Caps {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            open: Arc::default(),
            max_total,
            max_per_address,
        }
    }

    /// Takes a place for a connection from `ip`, or says which cap it is over.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, Refused> {
        let key = portcullis_core::ip::client_group(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = open.per_address.entry(key).or_insert(0);
        if *n >= self.max_per_address {
            return Err(Refused::PerAddress);
        }
        *n += 1;
        open.total += 1;
        Ok(Slot {
            open: self.open.clone(),
            key,
        })
    }

    /// Open connections (all addresses).
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_address.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_address.remove(&self.key);
            }
        }
    }
}

/// Lets one log line through per `interval`, counting what it held back.
#[derive(Debug)]
pub struct LogGate {
    start: Instant,
    interval: Duration,
    /// Milliseconds since `start` of the last line let through, plus one (0: none yet).
    last: AtomicU64,
    held: AtomicU64,
}

impl LogGate {
    pub fn new(interval: Duration) -> Self {
        Self {
            start: Instant::now(),
            interval,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(events held back since the last line)` when a line may be written now.
    pub fn pass(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::ip::client_group;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn caps_total_and_per_address_and_give_back() {
        let caps = Caps::new(3, 2);
        let a1 = caps.admit(ip("10.0.0.1")).expect("a1");
        let _a2 = caps.admit(ip("10.0.0.1")).expect("a2");
        assert_eq!(caps.admit(ip("10.0.0.1")).err(), Some(Refused::PerAddress));
        let _b1 = caps.admit(ip("10.0.0.2")).expect("b1");
        assert_eq!(caps.admit(ip("10.0.0.3")).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _a3 = caps.admit(ip("10.0.0.1")).expect("a place came free");
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_v4_as_v4() {
        let caps = Caps::new(10, 1);
        let _a = caps.admit(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            caps.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refused::PerAddress)
        );
        let _b = caps.admit(ip("2001:db8:1:3::1")).expect("another /64");
        let _c = caps.admit(ip("192.0.2.1")).expect("v4");
        assert_eq!(
            caps.admit(ip("::ffff:192.0.2.1")).err(),
            Some(Refused::PerAddress)
        );
    }

    #[test]
    fn empty_addresses_are_forgotten() {
        let caps = Caps::new(100, 100);
        let slots: Vec<_> = (1..=50)
            .map(|i| caps.admit(ip(&format!("10.0.0.{i}"))).expect("slot"))
            .collect();
        drop(slots);
        assert!(caps.open.lock().expect("lock").per_address.is_empty());
    }

    proptest::proptest! {
        /// Against a model: whatever the order of connects and closes over a few addresses
        /// (IPv4 and IPv6 in two /64s), a connection is admitted exactly when its address and
        /// the listener are under their caps, and every place comes back.
        #[test]
        fn caps_match_the_model(
            max_total in 1usize..8,
            max_per in 1usize..8,
            ops in proptest::collection::vec((proptest::bool::ANY, 0usize..6), 0..200),
        ) {
            const ADDRS: [&str; 6] = [
                "10.0.0.1", "10.0.0.2", "::ffff:10.0.0.1",
                "2001:db8::1", "2001:db8::2", "2001:db8:0:1::1",
            ];
            let caps = Caps::new(max_total, max_per);
            let mut held: Vec<(IpAddr, Slot)> = Vec::new();
            for (connect, i) in ops {
                if connect {
                    let a = ip(ADDRS[i]);
                    let same = held.iter().filter(|(h, _)| client_group(*h) == client_group(a)).count();
                    let expect = if held.len() >= max_total {
                        Err(Refused::Total)
                    } else if same >= max_per {
                        Err(Refused::PerAddress)
                    } else {
                        Ok(())
                    };
                    let got = caps.admit(a);
                    proptest::prop_assert_eq!(got.as_ref().map(|_| ()).map_err(|e| *e), expect);
                    if let Ok(slot) = got {
                        held.push((a, slot));
                    }
                } else if !held.is_empty() {
                    held.remove(i % held.len());
                }
                proptest::prop_assert_eq!(caps.open(), held.len());
            }
            drop(held);
            proptest::prop_assert_eq!(caps.open(), 0);
            proptest::prop_assert!(caps.open.lock().expect("lock").per_address.is_empty());
        }
    }

    #[test]
    fn log_gate_lets_one_line_per_interval() {
        let gate = LogGate::new(Duration::from_secs(3600));
        assert_eq!(gate.pass(), Some(0));
        assert_eq!(gate.pass(), None);
        assert_eq!(gate.pass(), None);
        let gate = LogGate::new(Duration::ZERO);
        assert_eq!(gate.pass(), Some(0));
    }
}
