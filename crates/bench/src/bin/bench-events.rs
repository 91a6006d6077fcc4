//! `bench-events`: how fast events are published and delivered to many SSE subscribers on one
//! node — a real server (embedded SQLite event store, the `GET /v1/events` endpoint over
//! loopback HTTP) with `--subscribers` streams (100) open as a root admin, while batches of
//! events are published through the server's `Events` handle (as key changes and the detector
//! do). Baseline, in the same run: the same publishing with no stream open, alternated with the
//! measured runs round by round. Reported (one JSON line on stdout, a summary on stderr):
//! events/s stored with the subscribers, events/s stored without (the ratio of the two is the
//! cost of serving them), and events/s delivered (events × subscribers / time until the last
//! subscriber had the last event).
//!
//! ```text
//! cargo run --release -p portcullis-bench --bin bench-events -- --events 20000 --subscribers 100
//! ```
#![forbid(unsafe_code)]

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use portcullis::{backends, datadir};
use portcullis_core::{ExposeSecret, clock::SystemClock, tenant::TenantId};
use portcullis_events::{EventType, NewEvent};
use portcullis_server::{AppState, Config, audit::AuditLog, serve};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[derive(Debug, Parser)]
#[command(
    name = "bench-events",
    about = "Events published and delivered to SSE subscribers"
)]
struct Args {
    /// Events published per round.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Events per publish.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Open SSE streams during the measured runs.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Rounds (each: a baseline run and a measured run, the order alternating).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

struct Server {
    addr: std::net::SocketAddr,
    root: String,
    state: AppState,
    _dir: tempfile_dir::TempDir,
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn start(subscribers: usize) -> Result<Server, String> {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-bench-events-{}",
        portcullis_core::ids::new_id("run")
    ));
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    config.audit.enabled = false;
    config.events.sse.buffer = 1 << 16;
    config.events.sse.max_subscribers = subscribers.max(1) * 2;
    let data = datadir::open(&config).await.map_err(|e| e.to_string())?;
    let clock = Arc::new(SystemClock);
    let audit = AuditLog::disabled();
    let root =
        datadir::ensure_root_admin(data.store.as_ref(), &data.pepper, clock.as_ref(), &audit)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("a new data directory has an admin key")?;
    let events = backends::open_events(&config)
        .await
        .map_err(|e| e.to_string())?;
    let state =
        AppState::with_audit(&config, data.store, data.pepper, clock, audit).with_events(events);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    Ok(Server {
        addr,
        root: root.secret.expose_secret().to_owned(),
        state,
        _dir: tempfile_dir::TempDir(dir),
    })
}

/// Opens an SSE stream and counts `id:` lines until it has seen `until`; returns when it did.
async fn subscriber(
    addr: std::net::SocketAddr,
    root: String,
    ready: tokio::sync::mpsc::Sender<()>,
    mut until: tokio::sync::watch::Receiver<u64>,
) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!(
        "GET /v1/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {root}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry = Vec::new();
    let mut last = 0u64;
    let mut signalled = false;
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("stream closed".into());
        }
        if !signalled {
            signalled = true;
            let _ = ready.send(()).await;
        }
        carry.extend_from_slice(&buf[..n]);
        // Whole lines only; keep the rest for the next read.
        let cut = carry.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in carry[..cut].split(|b| *b == b'\n') {
            if let Some(v) = line
                .strip_prefix(b"id: ")
                .and_then(|id| std::str::from_utf8(id).ok())
                .and_then(|s| s.trim().parse().ok())
            {
                last = v;
            }
        }
        carry.drain(..cut);
        let target = *until.borrow_and_update();
        if target > 0 && last >= target {
            return Ok(last);
        }
    }
}

fn batch(n: usize, round: u32, from: u64) -> Vec<NewEvent> {
    let acme = TenantId::parse("bench").ok();
    let now = portcullis_core::OffsetDateTime::now_utc();
    (0..n as u64)
        .map(|i| {
            NewEvent::new(
                EventType::KeyUpdated,
                acme.clone(),
                now,
                json!({"key_id": format!("key_{round}_{}", from + i), "name": "bench"}),
            )
        })
        .collect()
}

/// Publishes `events` in batches; returns the time and the last id.
async fn publish(state: &AppState, events: u64, size: usize, round: u32) -> (Duration, u64) {
    let start = Instant::now();
    let mut done = 0;
    let mut last = 0;
    while done < events {
        let n = size.min((events - done) as usize);
        let stored = state.events.publish(batch(n, round, done)).await;
        last = stored.last().map_or(last, |e| e.id);
        done += n as u64;
    }
    (start.elapsed(), last)
}

async fn run(args: Args) -> Result<(), String> {
    let server = start(args.subscribers).await?;
    let mut rows = Vec::new();
    for round in 0..args.rounds {
        let baseline_first = round % 2 == 0;
        let mut base = None;
        let mut measured = None;
        for which in [baseline_first, !baseline_first] {
            if which {
                let (t, _) = publish(&server.state, args.events, args.batch, round).await;
                base = Some(t);
            } else {
                let (tx, mut rx) = tokio::sync::mpsc::channel(args.subscribers);
                let (until_tx, until_rx) = tokio::sync::watch::channel(0u64);
                let mut subs = Vec::new();
                for _ in 0..args.subscribers {
                    subs.push(tokio::spawn(subscriber(
                        server.addr,
                        server.root.clone(),
                        tx.clone(),
                        until_rx.clone(),
                    )));
                }
                for _ in 0..args.subscribers {
                    rx.recv().await.ok_or("a subscriber failed to connect")?;
                }
                let start = Instant::now();
                let (t, last) = publish(&server.state, args.events, args.batch, round).await;
                let _ = until_tx.send(last);
                for s in subs {
                    s.await.map_err(|e| e.to_string())??;
                }
                measured = Some((t, start.elapsed()));
            }
        }
        let (base, (published, delivered)) = (
            base.ok_or("no baseline")?,
            measured.ok_or("no measurement")?,
        );
        let rate = |d: Duration| args.events as f64 / d.as_secs_f64();
        rows.push((
            rate(base),
            rate(published),
            args.events as f64 * args.subscribers as f64 / delivered.as_secs_f64(),
        ));
        eprintln!(
            "round {}: published {:.0} ev/s with {} streams, {:.0} ev/s without (ratio {:.3}); delivered {:.0} ev/s in all",
            round + 1,
            rate(published),
            args.subscribers,
            rate(base),
            rate(published) / rate(base),
            rows.last().map_or(0.0, |r| r.2),
        );
    }
    let med = |f: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (base, with, delivered) = (med(|r| r.0), med(|r| r.1), med(|r| r.2));
    println!(
        "{}",
        json!({
            "events": args.events, "batch": args.batch, "subscribers": args.subscribers,
            "rounds": args.rounds,
            "published_per_s_baseline": base.round(),
            "published_per_s": with.round(),
            "ratio": (with / base * 1000.0).round() / 1000.0,
            "delivered_per_s": delivered.round(),
        })
    );
    eprintln!(
        "median: published {with:.0} ev/s with {} streams vs {base:.0} without (ratio {:.3}); delivered {delivered:.0} ev/s ({:.0} per stream)",
        args.subscribers,
        with / base,
        delivered / args.subscribers as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-events: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-events: {e}");
            ExitCode::FAILURE
        }
    }
}
