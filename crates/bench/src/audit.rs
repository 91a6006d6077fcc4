//! What the audit benchmark appends: request records as the gateway writes them.
use portcullis_audit::{CheckpointSigner, Decision, Kind, Record};
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
