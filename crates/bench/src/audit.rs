//! Audit append benchmarks shared by the bench binaries: gateway request records as the gateway
//! writes them, and a run that seals them once and appends every batch to several stores,
//! interleaved (the order rotating batch by batch) so that each store sees the same machine
//! state and the same file growth.
use std::time::{Duration, Instant};

use portcullis_audit::{
    AuditStore, AuditStoreError, Chainer, Checkpoint, CheckpointKind, CheckpointSigner, Decision,
    Entry, Kind, Record, verify_store,
};
use portcullis_core::OffsetDateTime;
use rand::{Rng, rngs::SmallRng};

/// A request record as the gateway writes it (about 350 bytes of JSON): one of `tenants`
/// tenants, one of 500 keys, 1 in 20 denied as rate limited.
pub fn request(rng: &mut SmallRng, tenants: u32, time: OffsetDateTime, n: u64) -> Record {
    let tenant = rng.random_range(0..tenants);
    let deny = rng.random_ratio(1, 20);
    let method = if rng.random_ratio(1, 4) {
        "POST"
    } else {
        "GET"
    };
    let mut r = Record::new(time, Kind::Request, "request")
        .with("method", method)
        .with("route", "/v1/invoices/{id}")
        .with("status", if deny { 429 } else { 200 })
        .with("latency_us", rng.random_range(150..5_000))
        .with("bytes_in", rng.random_range(0..2_048))
        .with("bytes_out", rng.random_range(200..16_384))
        .with(
            "client_ip",
            format!("203.0.113.{}", rng.random_range(1..255)),
        );
    r.tenant = Some(format!("tenant-{tenant:02}"));
    r.key_id = Some(format!("key_01JF{:022}", rng.random_range(0..500u32)));
    r.request_id = Some(format!("req_01JF{n:022}"));
    r.decision = Some(if deny {
        Decision::Deny
    } else {
        Decision::Allow
    });
    r.reason = deny.then(|| "rate_limited".to_owned());
    r
}

/// The signer of the runs' checkpoints.
pub fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed(&[1; 32])
}

/// Verifies every chain of each store of `stores` (in turn, the order rotating `rounds` times)
/// and returns the time each took in all: the read side of a layout.
pub async fn verify_interleaved(
    stores: &[&dyn AuditStore],
    rounds: usize,
) -> Result<Vec<Duration>, AuditStoreError> {
    let key = signer().verifying_key();
    let mut spent = vec![Duration::ZERO; stores.len()];
    for round in 0..rounds {
        for k in 0..stores.len() {
            let i = (round + k) % stores.len();
            let t = Instant::now();
            let verdict = verify_store(stores[i], &key, None, None, None).await?;
            spent[i] += t.elapsed();
            if let Err(broken) = verdict {
                return Err(AuditStoreError::Corrupt(broken.to_string()));
            }
        }
    }
    Ok(spent)
}

/// What a run appends.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub records: u64,
    /// Records per append (one transaction).
    pub batch: usize,
    pub tenants: u32,
    /// A signed periodic checkpoint of every chain after this many records.
    pub checkpoint_every: u64,
}

/// Where the time of a run went.
#[derive(Debug, Default, Clone)]
pub struct Spent {
    /// Building the records (shared by every store).
    pub build: Duration,
    /// Sealing them and signing checkpoints (shared by every store).
    pub seal: Duration,
    /// Appending, per store.
    pub append: Vec<Duration>,
    pub body_bytes: u64,
    pub checkpoints: u64,
}

/// Builds and seals the records of `w` once per batch and appends each batch to every store of
/// `stores`, the first store rotating batch by batch.
pub async fn append_interleaved(
    stores: &[&dyn AuditStore],
    w: Workload,
    rng: &mut SmallRng,
) -> Result<Spent, AuditStoreError> {
    let signer = signer();
    let mut chainer = Chainer::default();
    let start = OffsetDateTime::now_utc();
    let every = w.checkpoint_every.max(1);
    let mut spent = Spent {
        append: vec![Duration::ZERO; stores.len()],
        ..Spent::default()
    };
    let (mut done, mut batch_no) = (0u64, 0usize);
    while done < w.records {
        let n = (w.records - done).min(w.batch as u64);
        let t = Instant::now();
        let records: Vec<Record> = (done..done + n)
            .map(|i| request(rng, w.tenants, start + Duration::from_micros(i * 3), i))
            .collect();
        let built = Instant::now();
        let entries: Vec<Entry> = records.iter().map(|r| chainer.seal(r)).collect();
        let checkpoints: Vec<Checkpoint> = if (done + n) / every > done / every {
            let now = OffsetDateTime::now_utc();
            chainer
                .heads()
                .map(|(c, h)| signer.sign(CheckpointKind::Periodic, c, h.seq, h.hash, now))
                .collect()
        } else {
            Vec::new()
        };
        spent.build += built - t;
        spent.seal += built.elapsed();
        spent.body_bytes += entries.iter().map(|e| e.body.len() as u64).sum::<u64>();
        spent.checkpoints += checkpoints.len() as u64;
        for k in 0..stores.len() {
            let i = (batch_no + k) % stores.len();
            let t = Instant::now();
            stores[i].append(&entries, &checkpoints).await?;
            spent.append[i] += t.elapsed();
        }
        done += n;
        batch_no += 1;
    }
    Ok(spent)
}
