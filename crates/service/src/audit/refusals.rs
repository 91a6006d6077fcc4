//! Refusals of requests that carried no valid credential (no route, a bad path, no or a bad key,
//! a blocked address), aggregated: one `gateway.refused` record per client address, reason and
//! window, with the count, the first and last time and one sample path, instead of one record
//! per request. Anyone on the network can send such requests as fast as they like; recording
//! each would let them fill the disk (or, in `fail_closed` mode, make the server refuse
//! everyone once the audit database reaches its budget).
//!
//! Memory is bounded: at most `max_groups` (address, reason) groups per window; the refusals of
//! any further group are counted in one `_overflow` group. The audit writer takes the window
//! ([`Refusals::take`]) at its end, when it is asked to flush, and at shutdown, and seals the
//! records itself (they never wait for a place in the queue).
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
};

use portcullis_audit::{Decision, Kind, Record};
use portcullis_core::{OffsetDateTime, key};
use serde_json::Value;

/// The action of an aggregated refusal record.
pub const ACTION: &str = "gateway.refused";
/// The reason of the group that counts refusals beyond `max_groups`.
pub const OVERFLOW: &str = "_overflow";
/// Longest sample path kept (longer ones are cut at a character boundary).
pub const MAX_SAMPLE_PATH: usize = 256;

/// One refused request, as the gateway saw it.
#[derive(Debug)]
pub struct Refused<'a> {
    /// The client address (after `trusted_proxies`), as seen.
    pub client: IpAddr,
    /// The precise reason: `route_not_found`, `missing_credential`, `unknown_or_malformed`,
    /// `revoked`, `too_many_failed_attempts`, …
    pub reason: &'static str,
    /// Is it an authentication failure (record kind `auth`) rather than a refusal before any
    /// credential was looked at (kind `request`)?
    pub auth: bool,
    /// The (tenant, key id) of a revoked or expired key: the group goes to its tenant's chain.
    pub key: Option<(&'a str, &'a str)>,
    pub route: Option<&'a str>,
    pub method: &'a str,
    /// The request's path (never the query).
    pub path: &'a str,
    pub status: u16,
    pub time: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    client: IpAddr,
    reason: &'static str,
    /// (tenant, key id)
    key: Option<(String, String)>,
}

#[derive(Debug)]
struct Group {
    count: u64,
    first: OffsetDateTime,
    last: OffsetDateTime,
    auth: bool,
    /// The client address as the record writes it (rendered once, at the group's first
    /// refusal: it may be a keyed pseudonym).
    client_ip: String,
    status: u16,
    method: String,
    route: Option<String>,
    /// `None` when the path looked like it held a key.
    sample_path: Option<String>,
}

impl Group {
    fn start(r: &Refused<'_>, client_ip: String) -> Self {
        Self {
            count: 0,
            first: r.time,
            last: r.time,
            auth: r.auth,
            client_ip,
            status: r.status,
            method: r.method.chars().take(16).collect(),
            route: r.route.map(str::to_owned),
            sample_path: sample_path(r.path),
        }
    }

    fn add(&mut self, time: OffsetDateTime) {
        self.count += 1;
        self.first = self.first.min(time);
        self.last = self.last.max(time);
    }
}

#[derive(Debug, Default)]
struct Window {
    groups: HashMap<GroupKey, Group>,
    /// Refusals of groups beyond `max_groups`: (count, first, last).
    overflow: Option<(u64, OffsetDateTime, OffsetDateTime)>,
}

/// The refusals of the current window. Shared by the gateway (which adds) and the audit writer
/// (which takes).
#[derive(Debug)]
pub struct Refusals {
    window: Mutex<Window>,
    max_groups: usize,
    window_seconds: u64,
}

impl Refusals {
    pub fn new(max_groups: usize, window_seconds: u64) -> Self {
        Self {
            window: Mutex::new(Window::default()),
            max_groups,
            window_seconds,
        }
    }

    /// Counts `r` in its group. `client_ip` renders the address for the record; it is called
    /// once per group and window.
    pub fn add(&self, r: &Refused<'_>, client_ip: impl FnOnce() -> String) {
        let k = GroupKey {
            client: r.client,
            reason: r.reason,
            key: r.key.map(|(t, k)| (t.to_owned(), k.to_owned())),
        };
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let room = w.groups.len() < self.max_groups;
        match w.groups.get_mut(&k) {
            Some(g) => g.add(r.time),
            None if room => w
                .groups
                .entry(k)
                .or_insert_with(|| Group::start(r, client_ip()))
                .add(r.time),
            None => {
                let o = w.overflow.get_or_insert((0, r.time, r.time));
                o.0 += 1;
                o.1 = o.1.min(r.time);
                o.2 = o.2.max(r.time);
            }
        }
    }

    /// Ends the window: its records (one per group, and one for the overflow), oldest last
    /// refusal first. The next window starts empty.
    pub fn take(&self) -> Vec<Record> {
        let w = std::mem::take(&mut *self.window.lock().unwrap_or_else(PoisonError::into_inner));
        let mut out: Vec<Record> = w
            .groups
            .into_iter()
            .map(|(k, g)| self.record(k, g))
            .collect();
        if let Some((count, first, last)) = w.overflow {
            let mut r = Record::new(last, Kind::Request, ACTION)
                .with("count", count)
                .with("first", rfc3339(first))
                .with("last", rfc3339(last))
                .with("window_seconds", self.window_seconds)
                .with("max_groups", self.max_groups as u64);
            r.decision = Some(Decision::Deny);
            r.reason = Some(OVERFLOW.to_owned());
            out.push(r);
        }
        out.sort_by_key(|r| r.time);
        out
    }

    /// Refusals counted so far in this window, overflow included.
    pub fn pending(&self) -> u64 {
        let w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        w.groups.values().map(|g| g.count).sum::<u64>() + w.overflow.map_or(0, |o| o.0)
    }

    fn record(&self, k: GroupKey, g: Group) -> Record {
        let kind = if g.auth { Kind::Auth } else { Kind::Request };
        let mut r = Record::new(g.last, kind, ACTION)
            .with("client_ip", g.client_ip)
            .with("count", g.count)
            .with("first", rfc3339(g.first))
            .with("last", rfc3339(g.last))
            .with("window_seconds", self.window_seconds)
            .with("status", g.status)
            .with("method", g.method)
            .with("route", g.route.map_or(Value::Null, Value::from))
            .with(
                "sample_path",
                g.sample_path.map_or(Value::Null, Value::from),
            );
        r.decision = Some(Decision::Deny);
        r.reason = Some(k.reason.to_owned());
        if let Some((tenant, key_id)) = k.key {
            r.tenant = Some(tenant);
            r.key_id = Some(key_id);
        }
        r
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The path as a sample: `None` when it (or its percent-decoded form) holds anything that looks
/// like a key — a run of [`key::RANDOM_LEN`] or more letters and digits, which every key body
/// has whatever its prefix or checksum; otherwise cut to [`MAX_SAMPLE_PATH`] bytes.
pub fn sample_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if has_key_like_run(path.as_bytes()) || has_key_like_run(&percent_decode(path)) {
        return None;
    }
    let mut end = path.len().min(MAX_SAMPLE_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    Some(path[..end].to_owned())
}

fn has_key_like_run(bytes: &[u8]) -> bool {
    let mut run = 0;
    for b in bytes {
        run = if b.is_ascii_alphanumeric() {
            run + 1
        } else {
            0
        };
        if run >= key::RANDOM_LEN {
            return true;
        }
    }
    false
}

/// `%XX` decoded, repeatedly (a doubly encoded key is found too); other bytes as they are.
fn percent_decode(s: &str) -> Vec<u8> {
    let mut cur = s.as_bytes().to_vec();
    for _ in 0..3 {
        let mut out = Vec::with_capacity(cur.len());
        let mut i = 0;
        while i < cur.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if cur[i] == b'%'
                && let (Some(h), Some(l)) = (
                    cur.get(i + 1).copied().and_then(hex),
                    cur.get(i + 2).copied().and_then(hex),
                )
            {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
            } else {
                out.push(cur[i]);
                i += 1;
            }
        }
        if out == cur {
            break;
        }
        cur = out;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refused(client: &str, reason: &'static str, path: &str, secs: i64) -> Refused<'static> {
        Refused {
            client: client.parse().expect("ip"),
            reason,
            auth: true,
            key: None,
            route: Some("r"),
            method: "GET",
            path: Box::leak(path.to_owned().into_boxed_str()),
            status: 401,
            time: OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("time"),
        }
    }

    #[test]
    fn one_record_per_address_and_reason_and_the_rest_in_overflow() {
        let agg = Refusals::new(2, 60);
        for i in 0..500 {
            agg.add(
                &refused("192.0.2.1", "unknown_or_malformed", "/a", i),
                || "192.0.2.1".into(),
            );
        }
        agg.add(&refused("192.0.2.1", "missing_credential", "/b", 3), || {
            "192.0.2.1".into()
        });
        for i in 0..1_000 {
            let ip = format!("198.51.100.{}", i % 250);
            agg.add(&refused(&ip, "missing_credential", "/c", 7), || ip.clone());
        }
        assert_eq!(agg.pending(), 1_501);
        let records = agg.take();
        assert_eq!(records.len(), 3, "{records:?}");
        let main = records
            .iter()
            .find(|r| r.reason.as_deref() == Some("unknown_or_malformed"))
            .expect("group");
        assert_eq!(main.data["count"], 500);
        assert_eq!(main.data["first"], "2027-01-15T08:00:00Z");
        assert_eq!(main.data["last"], "2027-01-15T08:08:19Z");
        assert_eq!(main.data["sample_path"], "/a");
        assert_eq!(main.kind, Kind::Auth);
        let overflow = records
            .iter()
            .find(|r| r.reason.as_deref() == Some(OVERFLOW))
            .expect("overflow");
        assert_eq!(overflow.data["count"], 1_000);
        assert!(agg.take().is_empty(), "the next window starts empty");
    }

    #[test]
    fn sample_paths_hold_no_key() {
        let key = key::generate("sk_live");
        use portcullis_core::ExposeSecret as _;
        let k = key.expose_secret();
        let encoded: String = k.bytes().map(|b| format!("%{b:02X}")).collect();
        for p in [
            format!("/v1/{k}/x"),
            format!("/v1/{}", k.replace('_', "%5F")),
            format!("/v1/{encoded}"),
            format!("/v1/{}", encoded.replace('%', "%25")),
        ] {
            assert_eq!(sample_path(&p), None, "{p}");
        }
        assert_eq!(
            sample_path("/v1/orders/7?token=x").as_deref(),
            Some("/v1/orders/7")
        );
        let long = format!("/{}", "é/".repeat(300));
        let cut = sample_path(&long).expect("sample");
        assert!(cut.len() <= MAX_SAMPLE_PATH && long.starts_with(&cut));
    }

    proptest! {
        /// Whatever surrounds or encodes a key, the sample never shows its random part.
        #[test]
        fn no_sample_shows_a_key(
            before in "[/a-z0-9%._-]{0,40}",
            after in "[/a-z0-9%._-]{0,40}",
            encode in proptest::collection::vec(any::<bool>(), 40..80),
        ) {
            use portcullis_core::ExposeSecret as _;
            let key = key::generate("sk_test");
            let k = key.expose_secret();
            let mid: String = k
                .chars()
                .zip(encode.iter().cycle())
                .map(|(c, e)| if *e { format!("%{:02x}", c as u32) } else { c.to_string() })
                .collect();
            let path = format!("/{before}{mid}{after}");
            let sample = sample_path(&path);
            prop_assert!(sample.is_none(), "{path} -> {sample:?}");
        }

        #[test]
        fn memory_is_bounded(clients in proptest::collection::vec(any::<u32>(), 1..400)) {
            let agg = Refusals::new(16, 60);
            for c in &clients {
                let ip = IpAddr::from(c.to_be_bytes());
                let mut r = refused("192.0.2.1", "missing_credential", "/", 0);
                r.client = ip;
                agg.add(&r, || ip.to_string());
            }
            let records = agg.take();
            prop_assert!(records.len() <= 17);
            let total: u64 = records.iter().map(|r| r.data["count"].as_u64().unwrap_or(0)).sum();
            prop_assert_eq!(total, clients.len() as u64);
        }
    }
}
