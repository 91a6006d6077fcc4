//! `bench-seed`: fills a portcullis data directory with N keys of one tenant straight through the
//! SQLite store, writes a uniform sample of their secrets as `POST /v1/verify` bodies (one JSON
//! document per line, for `bench-load --body-file`), then measures `Store::find_key` in process
//! for sampled keys on a freshly opened store. Prints one JSON line.
//!
//! The data directory must have its pepper (`{data_dir}/pepper`): start `portcullis serve` on it
//! once, or create an admin key with the CLI, before seeding.
#![forbid(unsafe_code)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use clap::Parser;
use portcullis_bench::latency;
use portcullis_core::{
    ExposeSecret, OffsetDateTime,
    clock::whole_seconds,
    hash::{KeyHash, Pepper},
    model::{ApiKey, Tenant},
    request::{CreateKey, CreateTenant, KeyPolicy},
    tenant::{Environment, TenantId},
};
use portcullis_sqlite::SqliteStore;
use portcullis_store::Store;
use rand::{Rng, SeedableRng, rngs::SmallRng, seq::SliceRandom};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "bench-seed",
    about = "Seed a portcullis data directory with keys for benchmarks"
)]
struct Args {
    /// The data directory (`portcullis.db` and `pepper` inside).
    #[arg(long)]
    data_dir: PathBuf,
    /// Keys to create.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Tenant of the keys (created when missing).
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Scope given to every key (repeatable).
    #[arg(long = "scope", default_value = "invoices:read")]
    scopes: Vec<String>,
    /// Keys per insert transaction.
    #[arg(long, default_value_t = 20_000)]
    batch: usize,
    /// Secrets to sample (uniformly) into `--sample-out`.
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
    /// Where to write the sampled verify bodies; `{data_dir}/verify-bodies.jsonl` by default.
    #[arg(long)]
    sample_out: Option<PathBuf>,
    /// In-process `find_key` lookups to time.
    #[arg(long, default_value_t = 20_000)]
    lookups: usize,
    /// Seed of the sampling; random when absent.
    #[arg(long)]
    seed: Option<u64>,
}

type AnyError = Box<dyn std::error::Error>;

fn read_pepper(data_dir: &Path) -> Result<Pepper, AnyError> {
    let path = data_dir.join("pepper");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (start `portcullis serve --data-dir {}` once to create it)",
            path.display(),
            data_dir.display()
        )
    })?;
    Ok(Pepper::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

async fn tenant(store: &SqliteStore, id: &str, now: OffsetDateTime) -> Result<Tenant, AnyError> {
    if let Some(t) = store.get_tenant(&TenantId::parse(id)?).await? {
        return Ok(t);
    }
    let t = CreateTenant {
        id: id.to_owned(),
        name: "Benchmark".to_owned(),
        key_prefix: None,
        max_key_lifetime_seconds: None,
        rate_limit: None,
        allowed_scopes: None,
        max_key_rate_limit: None,
    }
    .validate(now)?;
    store.create_tenant(&t).await?;
    Ok(t)
}

/// Creates the keys in batches; returns a uniform sample of their secrets (reservoir sampling).
async fn seed(
    args: &Args,
    store: &SqliteStore,
    pepper: &Pepper,
    rng: &mut SmallRng,
) -> Result<Vec<String>, AnyError> {
    let now = whole_seconds(OffsetDateTime::now_utc());
    let tenant = tenant(store, &args.tenant, now).await?;
    let policy = KeyPolicy::default();
    let mut sample: Vec<String> = Vec::with_capacity(args.sample);
    let mut batch: Vec<(ApiKey, KeyHash)> = Vec::with_capacity(args.batch);
    for i in 0..args.keys {
        let new = CreateKey {
            name: format!("bench-{i}"),
            environment: Environment::Live,
            scopes: args.scopes.clone(),
            expires_at: None,
            ip_allowlist: Vec::new(),
            metadata: None,
            external_id: None,
            rate_limit: None,
        }
        .create(&tenant, &policy, now)?;
        let secret = new.secret.expose_secret();
        if sample.len() < args.sample {
            sample.push(secret.to_owned());
        } else {
            let j = rng.random_range(0..=i) as usize;
            if j < args.sample {
                sample[j] = secret.to_owned();
            }
        }
        batch.push((new.key, pepper.hash(secret)));
        if batch.len() >= args.batch || i + 1 == args.keys {
            store.bulk_insert_keys(&batch).await?;
            batch.clear();
            if (i + 1) % 100_000 < args.batch as u64 {
                eprintln!("bench-seed: {} keys", i + 1);
            }
        }
    }
    Ok(sample)
}

fn write_sample(
    path: &Path,
    tenant: &str,
    scopes: &[String],
    sample: &[String],
) -> Result<(), AnyError> {
    // The file holds live secrets: readable by its owner only.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = std::io::BufWriter::new(options.open(path)?);
    for secret in sample {
        writeln!(
            out,
            "{}",
            json!({"key": secret, "tenant": tenant, "scopes": scopes})
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Times `find_key` for `lookups` sampled keys (cycling through the shuffled sample) on a store
/// opened afresh, after a warm-up of one pass over at most 1,000 of them.
async fn time_lookups(
    db: &Path,
    pepper: &Pepper,
    sample: &[String],
    lookups: usize,
    rng: &mut SmallRng,
) -> Result<serde_json::Value, AnyError> {
    let store = SqliteStore::open(db).await?;
    let mut hashes: Vec<KeyHash> = sample.iter().map(|s| pepper.hash(s)).collect();
    hashes.shuffle(rng);
    if hashes.is_empty() || lookups == 0 {
        return Ok(json!({"lookups": 0}));
    }
    for h in hashes.iter().rev().take(1000) {
        store.find_key(h).await?;
    }
    let mut histogram = latency::new_histogram();
    for i in 0..lookups {
        let h = &hashes[i % hashes.len()];
        let t = Instant::now();
        let found = store.find_key(h).await?;
        latency::record(&mut histogram, t.elapsed());
        if found.is_none() {
            return Err("a seeded key was not found".into());
        }
    }
    store.close().await;
    let mut summary = latency::summary(&histogram);
    summary["lookups"] = json!(lookups);
    Ok(summary)
}

async fn run(args: Args) -> Result<serde_json::Value, AnyError> {
    let pepper = read_pepper(&args.data_dir)?;
    let db = args.data_dir.join("portcullis.db");
    let mut rng = args
        .seed
        .map_or_else(SmallRng::from_os_rng, SmallRng::seed_from_u64);
    let started = Instant::now();
    let store = SqliteStore::open(&db).await?;
    let sample = seed(&args, &store, &pepper, &mut rng).await?;
    store.close().await;
    let seed_seconds = started.elapsed().as_secs_f64();
    let sample_out = args
        .sample_out
        .clone()
        .unwrap_or_else(|| args.data_dir.join("verify-bodies.jsonl"));
    write_sample(&sample_out, &args.tenant, &args.scopes, &sample)?;
    let lookups = time_lookups(&db, &pepper, &sample, args.lookups, &mut rng).await?;
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    Ok(json!({
        "keys": args.keys,
        "seed_seconds": (seed_seconds * 10.0).round() / 10.0,
        "keys_per_second": (args.keys as f64 / seed_seconds).round(),
        "db_bytes": db_bytes,
        "sample": sample.len(),
        "sample_out": sample_out,
        "find_key": lookups,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-seed: {e}");
            ExitCode::FAILURE
        }
    }
}
