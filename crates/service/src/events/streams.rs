//! The caps on open SSE streams: in all (`max_subscribers`), per tenant read and per admin key,
//! and the signal that ends every stream at shutdown. Places are taken when a stream opens and
//! given back when it is dropped.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

/// The open streams of one server: how many, and the signal that ends them at shutdown (a
/// graceful shutdown waits for open responses, and a stream would never end by itself).
#[derive(Debug, Clone)]
pub struct Streams {
    open: Arc<AtomicUsize>,
    owners: Arc<Mutex<Owners>>,
    closing: Arc<watch::Sender<bool>>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            open: Arc::default(),
            owners: Arc::default(),
            closing: Arc::new(watch::channel(false).0),
        }
    }
}

/// Open streams per tenant read and per admin key (entries at zero are removed).
#[derive(Debug, Default)]
struct Owners {
    tenants: HashMap<String, usize>,
    keys: HashMap<String, usize>,
}

/// One open stream's place among its tenant's and its key's; given back when dropped.
#[derive(Debug)]
pub struct OwnerPlace {
    owners: Arc<Mutex<Owners>>,
    tenant: Option<String>,
    key: String,
}

/// The per-tenant and per-key caps of open streams.
#[derive(Debug, Clone, Copy)]
pub struct OwnerCaps {
    pub per_tenant: usize,
    pub per_key: usize,
}

impl OwnerPlace {
    /// A place for a stream of `key` reading `tenant` (`None`: every tenant), unless one of
    /// them has its cap of open streams.
    pub fn take(
        streams: &Streams,
        tenant: Option<&str>,
        key: &str,
        caps: OwnerCaps,
    ) -> Option<Self> {
        let mut o = streams.owners.lock().unwrap_or_else(|e| e.into_inner());
        if o.keys.get(key).is_some_and(|n| *n >= caps.per_key) {
            return None;
        }
        if let Some(t) = tenant
            && o.tenants.get(t).is_some_and(|n| *n >= caps.per_tenant)
        {
            return None;
        }
        *o.keys.entry(key.to_owned()).or_insert(0) += 1;
        if let Some(t) = tenant {
            *o.tenants.entry(t.to_owned()).or_insert(0) += 1;
        }
        Some(Self {
            owners: streams.owners.clone(),
            tenant: tenant.map(str::to_owned),
            key: key.to_owned(),
        })
    }
}

fn give_back(map: &mut HashMap<String, usize>, name: &str) {
    if let Some(n) = map.get_mut(name) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(name);
        }
    }
}

impl Drop for OwnerPlace {
    fn drop(&mut self) {
        let mut o = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        give_back(&mut o.keys, &self.key);
        if let Some(t) = &self.tenant {
            give_back(&mut o.tenants, t);
        }
    }
}

impl super::Events {
    /// A receiver told when the server starts shutting down (every stream then ends).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.streams.closing.subscribe()
    }

    /// Ends every open SSE stream (each gets a `reconnect` frame) and refuses new ones; called
    /// when the server starts shutting down.
    pub fn close_streams(&self) {
        self.streams.closing.send_replace(true);
    }

    /// How many SSE streams are open.
    pub fn open_streams(&self) -> usize {
        self.streams.open.load(Ordering::Relaxed)
    }
}

/// One open stream's place among `max_subscribers`; given back when the stream is dropped
/// (ended, or its client went away).
#[derive(Debug)]
pub struct Place {
    open: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl Place {
    pub fn take(streams: &Streams, gauge: &Gauge, max: usize) -> Option<Self> {
        streams
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        gauge.inc();
        Some(Self {
            open: streams.open.clone(),
            gauge: gauge.clone(),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_places_are_bounded_per_tenant_and_key() {
        let streams = Streams::default();
        let caps = OwnerCaps {
            per_tenant: 2,
            per_key: 2,
        };
        let a = OwnerPlace::take(&streams, Some("acme"), "k1", caps).expect("a");
        let _b = OwnerPlace::take(&streams, Some("beta"), "k1", caps).expect("b");
        assert!(
            OwnerPlace::take(&streams, None, "k1", caps).is_none(),
            "k1 has two"
        );
        let _c = OwnerPlace::take(&streams, Some("acme"), "k2", caps).expect("c");
        assert!(
            OwnerPlace::take(&streams, Some("acme"), "k3", caps).is_none(),
            "acme has two"
        );
        let _d = OwnerPlace::take(&streams, None, "k3", caps).expect("global: no tenant cap");
        drop(a);
        let _e = OwnerPlace::take(&streams, Some("acme"), "k1", caps).expect("given back");
        drop((_b, _c, _d, _e));
        let o = streams.owners.lock().expect("lock");
        assert!(o.keys.is_empty() && o.tenants.is_empty());
    }

    #[test]
    fn places_are_bounded_and_given_back() {
        let streams = Streams::default();
        let gauge = Gauge::default();
        let a = Place::take(&streams, &gauge, 2).expect("first");
        let b = Place::take(&streams, &gauge, 2).expect("second");
        assert!(Place::take(&streams, &gauge, 2).is_none());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        let _c = Place::take(&streams, &gauge, 2).expect("a place came free");
        drop(b);
        assert_eq!(streams.open.load(Ordering::Relaxed), 1);
    }
}
