//! `bench-audit`: how fast the audit writer's path stores records — seal (JSON body,
//! SHA-256 chain link) and `SqliteAuditStore::append` in batches into a fresh file — against a
//! baseline measured in the same run: the same records appended through the same store into a
//! second file without hashing (the body serialised, the hashes left zero). The two are
//! interleaved batch by batch, the order alternating, so both see the same machine state and the
//! same file growth. Prints one JSON line (stdout) and a human summary (stderr).
//!
//! With `--pipeline`, the candidate alone, as a pipelined writer would run it: each batch is
//! sealed while the previous one is appended; its rate is records over the wall time, less the
//! time spent generating the records. Compare it with runs without the flag, alternated.
//!
//! ```text
//! cargo run --release -p portcullis-bench --bin bench-audit -- --records 300000
//! ```
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;
use portcullis_audit::{
    AuditStore, Chainer, Checkpoint, CheckpointKind, CheckpointSigner, Digest, Entry, Record,
    record::micros,
};
use portcullis_bench::audit::request;
use portcullis_core::OffsetDateTime;
use portcullis_sqlite::SqliteAuditStore;
use rand::{SeedableRng, rngs::SmallRng};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "bench-audit",
    about = "Audit append throughput against a no-hash baseline"
)]
struct Args {
    /// Records to append (each to the candidate and to the baseline).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Records per append (one transaction).
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Tenants the records are spread over (one chain each).
    #[arg(long, default_value_t = 10)]
    tenants: u32,
    /// A signed periodic checkpoint of every chain after this many records (candidate only).
    #[arg(long, default_value_t = 10_000)]
    checkpoint_every: u64,
    /// Measure a pipelined writer instead: batch n+1 is sealed while batch n is appended (the
    /// candidate alone, no baseline; compare with runs without it, alternated).
    #[arg(long)]
    pipeline: bool,
    /// Directory for the two database files (a fresh one under the system temp directory by
    /// default, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

type AnyError = Box<dyn std::error::Error>;

/// Time spent per side.
#[derive(Debug, Default)]
struct Spent {
    seal: Duration,
    append: Duration,
}

impl Spent {
    fn total(&self) -> Duration {
        self.seal + self.append
    }
}

/// The baseline's entry: the same body and columns, numbered, no hashing.
fn unhashed(chainer: &mut std::collections::HashMap<String, u64>, record: &Record) -> Entry {
    let seq = chainer.entry(record.chain().to_owned()).or_default();
    *seq += 1;
    Entry {
        chain: record.chain().to_owned(),
        seq: *seq,
        prev_hash: Digest::ZERO,
        hash: Digest::ZERO,
        time_micros: micros(record.time),
        body: record.to_body(),
    }
}

/// Batches whose records `--pipeline` generates at a time.
const PIPELINE_GENERATE_BATCHES: u64 = 20;

/// Signed periodic checkpoints of every chain head.
fn periodic(chainer: &Chainer, signer: &CheckpointSigner) -> Vec<Checkpoint> {
    chainer
        .heads()
        .map(|(c, h)| {
            signer.sign(
                CheckpointKind::Periodic,
                c,
                h.seq,
                h.hash,
                OffsetDateTime::now_utc(),
            )
        })
        .collect()
}

/// The candidate alone, pipelined: batch n+1 is generated and sealed while batch n is
/// appended (by a task of its own, as the server's writer would hand it over).
async fn run_pipelined(args: &Args, dir: &Path) -> Result<serde_json::Value, AnyError> {
    let candidate = SqliteAuditStore::open(&dir.join("candidate.sqlite3")).await?;
    let signer = portcullis_bench::audit::signer();
    let mut chainer = Chainer::default();
    let mut rng = SmallRng::seed_from_u64(7);
    let start = OffsetDateTime::now_utc();
    let (mut generate, mut seal, mut wait) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut pending: Option<
        tokio::task::JoinHandle<Result<(), portcullis_audit::AuditStoreError>>,
    > = None;
    let began = Instant::now();
    let mut done = 0u64;
    while done < args.records {
        // The records of the next few batches, generated while no append is in flight (their
        // time is left out of the rate).
        if let Some(p) = pending.take() {
            p.await??;
        }
        let t = Instant::now();
        let upto = args
            .records
            .min(done + PIPELINE_GENERATE_BATCHES * args.batch as u64);
        let mut records: Vec<Record> = (done..upto)
            .map(|i| {
                request(
                    &mut rng,
                    args.tenants,
                    start + Duration::from_micros(i * 3),
                    i,
                )
            })
            .collect();
        generate += t.elapsed();
        while !records.is_empty() {
            let t = Instant::now();
            let batch: Vec<Record> = records.drain(..args.batch.min(records.len())).collect();
            let n = batch.len() as u64;
            let every = args.checkpoint_every.max(1);
            let entries: Vec<Entry> = batch.iter().map(|r| chainer.seal(r)).collect();
            let cps = if (done + n) / every > done / every {
                periodic(&chainer, &signer)
            } else {
                Vec::new()
            };
            let sealed = Instant::now();
            seal += sealed - t;
            if let Some(p) = pending.take() {
                p.await??;
            }
            wait += sealed.elapsed();
            let store = candidate.clone();
            pending = Some(tokio::spawn(
                async move { store.append(&entries, &cps).await },
            ));
            done += n;
        }
    }
    if let Some(p) = pending.take() {
        let t = Instant::now();
        p.await??;
        wait += t.elapsed();
    }
    let wall = began.elapsed();
    candidate.close().await;
    let rate = args.records as f64 / (wall - generate).as_secs_f64();
    Ok(json!({
        "bench": "audit_append_pipelined",
        "records": args.records,
        "batch": args.batch,
        "tenants": args.tenants,
        "candidate_records_per_s": rate.round(),
        "candidate_seal_s": seal.as_secs_f64(),
        "candidate_wait_s": wait.as_secs_f64(),
        "generate_s": generate.as_secs_f64(),
    }))
}

async fn run(args: &Args, dir: &Path) -> Result<serde_json::Value, AnyError> {
    if args.pipeline {
        return run_pipelined(args, dir).await;
    }
    let candidate = SqliteAuditStore::open(&dir.join("candidate.sqlite3")).await?;
    let baseline = SqliteAuditStore::open(&dir.join("baseline.sqlite3")).await?;
    let signer = portcullis_bench::audit::signer();
    let mut chainer = Chainer::default();
    let mut numbers = std::collections::HashMap::new();
    let mut rng = SmallRng::seed_from_u64(7);
    let start = OffsetDateTime::now_utc();
    let (mut cand, mut base) = (Spent::default(), Spent::default());
    let (mut done, mut body_bytes, mut checkpoints) = (0u64, 0u64, 0u64);
    let mut batch_no = 0u64;
    while done < args.records {
        let n = args.batch.min(usize::try_from(args.records - done)?);
        let records: Vec<Record> = (done..done + n as u64)
            .map(|i| {
                let t = start + Duration::from_micros(i * 3);
                request(&mut rng, args.tenants, t, i)
            })
            .collect();
        let boundary =
            (done + n as u64) / args.checkpoint_every.max(1) > done / args.checkpoint_every.max(1);
        // Alternate which side goes first.
        for side in [batch_no % 2, (batch_no + 1) % 2] {
            if side == 0 {
                let t = Instant::now();
                let entries: Vec<Entry> = records.iter().map(|r| chainer.seal(r)).collect();
                let cps: Vec<Checkpoint> = if boundary {
                    periodic(&chainer, &signer)
                } else {
                    Vec::new()
                };
                let sealed = Instant::now();
                candidate.append(&entries, &cps).await?;
                cand.seal += sealed - t;
                cand.append += sealed.elapsed();
                body_bytes += entries.iter().map(|e| e.body.len() as u64).sum::<u64>();
                checkpoints += cps.len() as u64;
            } else {
                let t = Instant::now();
                let entries: Vec<Entry> =
                    records.iter().map(|r| unhashed(&mut numbers, r)).collect();
                let built = Instant::now();
                baseline.append(&entries, &[]).await?;
                base.seal += built - t;
                base.append += built.elapsed();
            }
        }
        done += n as u64;
        batch_no += 1;
    }
    candidate.close().await;
    baseline.close().await;
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    let rate = |s: &Spent| args.records as f64 / s.total().as_secs_f64();
    Ok(json!({
        "bench": "audit_append",
        "records": args.records,
        "batch": args.batch,
        "tenants": args.tenants,
        "checkpoints": checkpoints,
        "mean_body_bytes": body_bytes / args.records.max(1),
        "candidate_records_per_s": rate(&cand).round(),
        "candidate_seal_s": cand.seal.as_secs_f64(),
        "candidate_append_s": cand.append.as_secs_f64(),
        "baseline_records_per_s": rate(&base).round(),
        "baseline_build_s": base.seal.as_secs_f64(),
        "baseline_append_s": base.append.as_secs_f64(),
        "ratio_to_baseline": (rate(&cand) / rate(&base) * 1_000.0).round() / 1_000.0,
        "candidate_file_bytes": size("candidate.sqlite3"),
        "baseline_file_bytes": size("baseline.sqlite3"),
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.records == 0 || args.batch == 0 {
        eprintln!("bench-audit: --records and --batch must be at least 1");
        return ExitCode::FAILURE;
    }
    let (dir, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => {
            let d =
                std::env::temp_dir().join(format!("portcullis-bench-audit-{}", std::process::id()));
            (d, true)
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("bench-audit: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let result = run(&args, &dir).await;
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(v) if args.pipeline => {
            println!("{v}");
            eprintln!(
                "bench-audit: {} records in batches of {}, pipelined: {:.0} records/s \
                 (seal {:.2} s, waiting for appends {:.2} s)",
                v["records"],
                v["batch"],
                v["candidate_records_per_s"].as_f64().unwrap_or(0.0),
                v["candidate_seal_s"].as_f64().unwrap_or(0.0),
                v["candidate_wait_s"].as_f64().unwrap_or(0.0),
            );
            ExitCode::SUCCESS
        }
        Ok(v) => {
            println!("{v}");
            let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
            eprintln!(
                "bench-audit: {} records in batches of {}: sealed + appended {:.0} records/s \
                 (seal {:.2} s, append {:.2} s); baseline without hashing {:.0} records/s; \
                 ratio {:.3}",
                v["records"],
                v["batch"],
                f("candidate_records_per_s"),
                f("candidate_seal_s"),
                f("candidate_append_s"),
                f("baseline_records_per_s"),
                f("ratio_to_baseline"),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-audit: {e}");
            ExitCode::FAILURE
        }
    }
}
