//! The load generator: keep-alive HTTP/1.1 connections on one tokio runtime.
//!
//! Closed loop (the default): every connection sends its next request as soon as the previous
//! answer is read, which measures the maximum throughput. Open loop (`rate`): a pacer thread
//! issues tickets at fixed times and idle connections take them; latency counts from the moment a
//! ticket was issued, so a server that falls behind shows it in the tail (no coordinated
//! omission), while the pacer's own wake-up delay is not charged to the server.
//!
//! Counted (`count`): closed loop without warm-up or time limit, ending after exactly that many
//! requests were sent over all connections, each answered or counted as an error: for measuring
//! the cost of a known number of requests (e.g. instructions under callgrind).
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};

use crate::{http1, latency};

/// What to send, how hard and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    /// Serialised requests, sent round-robin.
    pub requests: Vec<Vec<u8>>,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second over all connections (open loop), or `None` for closed loop.
    pub rate: Option<f64>,
    /// Send exactly this many requests over all connections, closed loop, then stop; `warmup`,
    /// `duration` and `rate` are then not used, every request is measured, and the report's
    /// `elapsed` is the time the requests took. A failed connection attempt uses up one request
    /// (counted as an error), so the run always ends.
    pub count: Option<u64>,
    /// A request not answered within this time counts as an error (the connection is renewed).
    pub timeout: Duration,
    /// Text every 2xx answer's body must contain (e.g. `"valid":true`).
    pub expect: Option<Vec<u8>>,
}

/// Counts and latencies of the measured window (requests issued after the warm-up).
#[derive(Debug)]
pub struct LoadReport {
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers with any other status.
    pub non_2xx: u64,
    /// 2xx answers whose body lacked the expected text.
    pub unexpected: u64,
    /// Connection failures, broken connections and timeouts.
    pub errors: u64,
    /// Latency of every answered request (2xx or not).
    pub histogram: Histogram<u64>,
    /// The measured window.
    pub elapsed: Duration,
}

impl LoadReport {
    fn empty(elapsed: Duration) -> Self {
        Self {
            ok: 0,
            non_2xx: 0,
            unexpected: 0,
            errors: 0,
            histogram: latency::new_histogram(),
            elapsed,
        }
    }

    fn merge(&mut self, other: &LoadReport) {
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.unexpected += other.unexpected;
        self.errors += other.errors;
        self.histogram
            .add(&other.histogram)
            .expect("histograms of the same bounds");
    }

    /// Answered requests (2xx or not, expected or not).
    pub fn answered(&self) -> u64 {
        self.ok + self.non_2xx + self.unexpected
    }

    /// Answered requests per second of the measured window.
    pub fn rps(&self) -> f64 {
        self.answered() as f64 / self.elapsed.as_secs_f64()
    }

    /// Share of requests that were not an expected 2xx answer (1.0 when nothing was sent).
    pub fn failure_ratio(&self) -> f64 {
        let all = self.answered() + self.errors;
        if all == 0 {
            1.0
        } else {
            (all - self.ok) as f64 / all as f64
        }
    }
}

#[derive(Debug)]
struct Window {
    measure_from: Instant,
    end: Instant,
    /// Requests left to send in a counted run (`LoadConfig::count`).
    left: Option<AtomicU64>,
}

impl Window {
    /// Takes one request from a counted run's budget: false when none is left (always true for a
    /// run by time).
    fn take(&self) -> bool {
        self.left.as_ref().is_none_or(|left| {
            left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }
}

/// A counted run's time limit: far enough never to be reached.
const NO_END: Duration = Duration::from_secs(365 * 24 * 3600);

/// A request the pacer allows: when it was due (which decides whether it falls in the measured
/// window) and when the pacer actually issued it (where its latency starts).
#[derive(Debug, Clone, Copy)]
struct Ticket {
    due: Instant,
    issued: Instant,
}

type Tickets = Arc<Mutex<mpsc::UnboundedReceiver<Ticket>>>;

/// Runs the load on the current tokio runtime and returns what was measured.
pub async fn run(config: LoadConfig) -> LoadReport {
    assert!(config.connections > 0, "at least one connection");
    assert!(!config.requests.is_empty(), "at least one request");
    let config = Arc::new(config);
    let start = Instant::now();
    let window = Arc::new(match config.count {
        Some(n) => Window {
            measure_from: start,
            end: start + NO_END,
            left: Some(AtomicU64::new(n)),
        },
        None => Window {
            measure_from: start + config.warmup,
            end: start + config.warmup + config.duration,
            left: None,
        },
    });
    let tickets = config.rate.filter(|_| config.count.is_none()).map(|rate| {
        let (tx, rx) = mpsc::unbounded_channel();
        let end = window.end;
        std::thread::spawn(move || pace(&tx, rate, start, end));
        Arc::new(Mutex::new(rx))
    });
    let tasks: Vec<_> = (0..config.connections)
        .map(|id| {
            tokio::spawn(connection(
                id,
                config.clone(),
                window.clone(),
                tickets.clone(),
            ))
        })
        .collect();
    let mut report = LoadReport::empty(config.duration);
    for t in tasks {
        report.merge(&t.await.expect("load task panicked"));
    }
    if config.count.is_some() {
        report.elapsed = start.elapsed();
    }
    report
}

/// Issues one ticket every `1/rate` seconds until `end`.
fn pace(tx: &mpsc::UnboundedSender<Ticket>, rate: f64, start: Instant, end: Instant) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next = start;
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let now = Instant::now();
        while next <= now && next < end {
            if tx
                .send(Ticket {
                    due: next,
                    issued: now,
                })
                .is_err()
            {
                return;
            }
            next += interval;
        }
    }
}

async fn connection(
    id: usize,
    config: Arc<LoadConfig>,
    window: Arc<Window>,
    tickets: Option<Tickets>,
) -> LoadReport {
    let mut report = LoadReport::empty(config.duration);
    let mut next_request = id % config.requests.len();
    'connect: while Instant::now() < window.end {
        let mut conn = match http1::Connection::open(config.addr).await {
            Ok(c) => c,
            Err(_) => {
                if window.left.is_some() && !window.take() {
                    break 'connect;
                }
                if Instant::now() >= window.measure_from {
                    report.errors += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let ticket = match &tickets {
                Some(t) => match t.lock().await.recv().await {
                    Some(ticket) => ticket,
                    None => break 'connect,
                },
                None => {
                    let now = Instant::now();
                    Ticket {
                        due: now,
                        issued: now,
                    }
                }
            };
            if ticket.due >= window.end || !window.take() {
                break 'connect;
            }
            let measured = ticket.due >= window.measure_from;
            let request = &config.requests[next_request];
            next_request = (next_request + 1) % config.requests.len();
            let outcome = tokio::time::timeout(
                config.timeout,
                conn.exchange(request, config.expect.as_deref()),
            )
            .await;
            match outcome {
                Ok(Ok(answer)) => {
                    if measured {
                        latency::record(&mut report.histogram, ticket.issued.elapsed());
                        match (answer.status, answer.expected) {
                            (200..=299, true) => report.ok += 1,
                            (200..=299, false) => report.unexpected += 1,
                            _ => report.non_2xx += 1,
                        }
                    }
                    if !answer.keep_alive {
                        continue 'connect;
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    if measured {
                        report.errors += 1;
                    }
                    continue 'connect;
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn hello_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, crate::hello::router()).await });
        addr
    }

    fn config(addr: SocketAddr, path: &str, expect: &str, rate: Option<f64>) -> LoadConfig {
        LoadConfig {
            addr,
            requests: vec![http1::serialize_request(
                "POST",
                path,
                &addr.to_string(),
                &[("content-type".into(), "application/json".into())],
                br#"{"key":"k"}"#,
            )],
            connections: 4,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            rate,
            count: None,
            timeout: Duration::from_secs(2),
            expect: Some(expect.as_bytes().to_vec()),
        }
    }

    #[tokio::test]
    async fn closed_loop_counts_expected_answers() {
        let addr = hello_server().await;
        let r = run(config(addr, "/v1/verify", r#""valid":true"#, None)).await;
        assert!(r.ok > 10, "{r:?}");
        assert_eq!((r.non_2xx, r.unexpected, r.errors), (0, 0, 0));
        assert_eq!(r.histogram.len(), r.ok);
        assert_eq!(r.failure_ratio(), 0.0);
    }

    #[tokio::test]
    async fn wrong_answers_and_statuses_are_failures() {
        let addr = hello_server().await;
        let r = run(config(addr, "/v1/verify", r#""valid":false"#, None)).await;
        assert!(r.unexpected > 0 && r.ok == 0, "{r:?}");
        let r = run(config(addr, "/missing", "", None)).await;
        assert!(r.non_2xx > 0 && r.ok == 0, "{r:?}");
        assert_eq!(r.failure_ratio(), 1.0);
    }

    #[tokio::test]
    async fn open_loop_keeps_the_rate() {
        let addr = hello_server().await;
        let r = run(config(addr, "/v1/verify", "", Some(1000.0))).await;
        // 300 ms at 1000 requests per second.
        assert!((295..=305).contains(&r.ok), "{r:?}");
        assert_eq!(r.failure_ratio(), 0.0);
    }

    /// A server answering `GET /` that counts the requests it received.
    async fn counting_server() -> (SocketAddr, Arc<AtomicU64>) {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, seen)
    }

    #[tokio::test]
    async fn counted_runs_send_exactly_the_count() {
        for (connections, count) in [(1, 1), (1, 537), (4, 1000), (8, 3)] {
            let (addr, seen) = counting_server().await;
            let mut c = config(addr, "/", "ok", None);
            c.requests = vec![http1::serialize_request(
                "GET",
                "/",
                &addr.to_string(),
                &[],
                b"",
            )];
            c.connections = connections;
            c.count = Some(count);
            // Neither the time settings nor a rate apply to a counted run.
            c.duration = Duration::from_millis(1);
            c.rate = Some(1.0);
            let r = run(c).await;
            assert_eq!((r.ok, r.answered(), r.errors), (count, count, 0), "{r:?}");
            assert_eq!(r.histogram.len(), count);
            assert_eq!(
                seen.load(Ordering::SeqCst),
                count,
                "requests the server got"
            );
            assert!(r.elapsed > Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn counted_runs_end_when_the_server_is_gone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut c = config(addr, "/", "", None);
        c.count = Some(20);
        let r = run(c).await;
        assert_eq!((r.errors, r.answered()), (20, 0), "{r:?}");
    }

    #[tokio::test]
    async fn refused_connections_are_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let r = run(config(addr, "/", "", None)).await;
        assert!(r.errors > 0 && r.answered() == 0, "{r:?}");
    }
}
