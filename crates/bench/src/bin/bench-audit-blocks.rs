//! `bench-audit-blocks`: the audit log's two SQLite layouts side by side — one row per entry
//! (`SqliteAuditStore`) against one block per chain per append (`SqliteAuditBlockStore`). The
//! same gateway request records, sealed once, are appended to both files in the same run, batch
//! by batch, the order alternating, for each batch size asked for (the server's writer takes
//! whatever is queued, so small batches matter as much as large ones). Prints one JSON line per
//! batch size (stdout) and a human summary (stderr). Each run also verifies both files whole
//! (`verify_store`, twice each, interleaved): the read side of each layout; and appends the same
//! records to each layout alone, in fresh files, to measure the process's CPU time per record
//! (build + seal + append, every thread), the cost a gateway on one core pays.
//!
//! ```text
//! cargo run --release -p portcullis-bench --bin bench-audit-blocks -- --records 200000 --batch 1000 --batch 64
//! ```
#![forbid(unsafe_code)]

use std::{path::Path, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use portcullis_audit::AuditStore;
use portcullis_bench::{
    audit::{Workload, append_interleaved, verify_interleaved},
    cpu::cpu_time_of,
};
use portcullis_sqlite::{SqliteAuditBlockStore, SqliteAuditStore};
use rand::{SeedableRng, rngs::SmallRng};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "bench-audit-blocks",
    about = "Audit append throughput: rows against blocks"
)]
struct Args {
    /// Records to append per batch size (each to both layouts).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Records per append (one transaction); repeat for several sizes.
    #[arg(long, default_values_t = [1_000, 64])]
    batch: Vec<usize>,
    /// Tenants the records are spread over (one chain each).
    #[arg(long, default_value_t = 10)]
    tenants: u32,
    /// A signed periodic checkpoint of every chain after this many records.
    #[arg(long, default_value_t = 10_000)]
    checkpoint_every: u64,
    /// Directory for the database files (a fresh one under the system temp directory by
    /// default, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

type AnyError = Box<dyn std::error::Error>;

/// CPU time of this process (every thread: the sealing task and SQLite's worker threads).
fn cpu() -> Result<Duration, AnyError> {
    cpu_time_of(std::process::id()).ok_or_else(|| "cannot read /proc/self/stat".into())
}

/// CPU time per record (µs) of `w` appended to one store alone — build, seal, encode and the
/// store's work, whatever thread does it: the cost a gateway on one core pays. Each layout in
/// fresh files under `dir`, one after the other, twice each, the order alternating.
async fn cpu_per_record(w: Workload, dir: &Path) -> Result<[f64; 2], AnyError> {
    let mut used = [Duration::ZERO; 2];
    for round in 0..2 {
        for k in 0..2 {
            let layout = (round + k) % 2;
            let path = dir.join(format!("cpu-{}-{layout}-{round}.sqlite3", w.batch));
            let mut rng = SmallRng::seed_from_u64(9);
            if layout == 0 {
                let store = SqliteAuditStore::open(&path).await?;
                let before = cpu()?;
                append_interleaved(&[&store], w, &mut rng).await?;
                used[layout] += cpu()? - before;
                store.close().await;
            } else {
                let store = SqliteAuditBlockStore::open(&path).await?;
                let before = cpu()?;
                append_interleaved(&[&store], w, &mut rng).await?;
                used[layout] += cpu()? - before;
                store.close().await;
            }
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
    Ok(used.map(|d| d.as_secs_f64() * 1e6 / (2.0 * w.records as f64)))
}

async fn run(args: &Args, batch: usize, dir: &Path) -> Result<serde_json::Value, AnyError> {
    let rows_path = dir.join(format!("rows-{batch}.sqlite3"));
    let blocks_path = dir.join(format!("blocks-{batch}.sqlite3"));
    let rows = SqliteAuditStore::open(&rows_path).await?;
    let blocks = SqliteAuditBlockStore::open(&blocks_path).await?;
    let w = Workload {
        records: args.records,
        batch,
        tenants: args.tenants,
        checkpoint_every: args.checkpoint_every,
    };
    let stores: [&dyn AuditStore; 2] = [&rows, &blocks];
    let spent = append_interleaved(&stores, w, &mut SmallRng::seed_from_u64(7)).await?;
    let mut heads = [rows.heads().await?, blocks.heads().await?];
    for h in &mut heads {
        h.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if heads[0] != heads[1] {
        return Err("the two layouts hold different chain heads".into());
    }
    let verify = verify_interleaved(&stores, 2).await?;
    rows.close().await;
    blocks.close().await;
    let [rows_cpu, blocks_cpu] = cpu_per_record(w, dir).await?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let n = args.records as f64;
    let per_record_us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n;
    let shared = spent.build + spent.seal;
    let [rows_s, blocks_s] = [spent.append[0], spent.append[1]];
    Ok(json!({
        "bench": "audit_layouts",
        "records": args.records,
        "batch": batch,
        "tenants": args.tenants,
        "checkpoints": spent.checkpoints,
        "mean_body_bytes": spent.body_bytes / args.records.max(1),
        "build_us_per_record": per_record_us(spent.build),
        "seal_us_per_record": per_record_us(spent.seal),
        "rows_append_us_per_record": per_record_us(rows_s),
        "blocks_append_us_per_record": per_record_us(blocks_s),
        "rows_append_records_per_s": (n / rows_s.as_secs_f64()).round(),
        "blocks_append_records_per_s": (n / blocks_s.as_secs_f64()).round(),
        "rows_total_records_per_s": (n / (shared + rows_s).as_secs_f64()).round(),
        "blocks_total_records_per_s": (n / (shared + blocks_s).as_secs_f64()).round(),
        "rows_cpu_us_per_record": rows_cpu,
        "blocks_cpu_us_per_record": blocks_cpu,
        "rows_verify_records_per_s": (2.0 * n / verify[0].as_secs_f64()).round(),
        "blocks_verify_records_per_s": (2.0 * n / verify[1].as_secs_f64()).round(),
        "rows_file_bytes": size(&rows_path),
        "blocks_file_bytes": size(&blocks_path),
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.records == 0 || args.batch.contains(&0) {
        eprintln!("bench-audit-blocks: --records and --batch must be at least 1");
        return ExitCode::FAILURE;
    }
    let (dir, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => {
            let name = format!("portcullis-bench-audit-blocks-{}", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("bench-audit-blocks: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for &batch in &args.batch {
        match run(&args, batch, &dir).await {
            Ok(v) => {
                println!("{v}");
                let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
                eprintln!(
                    "bench-audit-blocks: {} records in batches of {batch}: append rows {:.0}/s \
                     ({:.2} us/record), blocks {:.0}/s ({:.2} us/record); with build {:.2} + \
                     seal {:.2} us/record: rows {:.0}/s, blocks {:.0}/s; verify rows {:.0}/s, \
                     blocks {:.0}/s; CPU per record (build + seal + append, all threads) rows \
                     {:.2} us, blocks {:.2} us",
                    v["records"],
                    f("rows_append_records_per_s"),
                    f("rows_append_us_per_record"),
                    f("blocks_append_records_per_s"),
                    f("blocks_append_us_per_record"),
                    f("build_us_per_record"),
                    f("seal_us_per_record"),
                    f("rows_total_records_per_s"),
                    f("blocks_total_records_per_s"),
                    f("rows_verify_records_per_s"),
                    f("blocks_verify_records_per_s"),
                    f("rows_cpu_us_per_record"),
                    f("blocks_cpu_us_per_record"),
                );
            }
            Err(e) => {
                eprintln!("bench-audit-blocks: batch {batch}: {e}");
                failed = true;
            }
        }
    }
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
