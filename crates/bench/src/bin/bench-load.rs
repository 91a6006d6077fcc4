//! `bench-load`: closed- or open-loop HTTP/1.1 keep-alive load against one URL, for a time or
//! (`--requests N`) for exactly N requests. Prints one JSON line and exits non-zero when more than
//! 0.1% of the requests were not answered with a 2xx, so a broken setup cannot pass for a fast
//! one.
#![forbid(unsafe_code)]

use std::{
    net::{SocketAddr, ToSocketAddrs},
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use http::{HeaderName, HeaderValue, Method, Uri, header};
use portcullis_bench::{
    cpu, http1, latency,
    load::{self, LoadConfig},
};
use serde_json::{Value, json};

/// Largest share of non-2xx answers and errors a run may have and still succeed.
const MAX_FAILURE_RATIO: f64 = 0.001;

#[derive(Debug, Parser)]
#[command(name = "bench-load", about = "Keep-alive HTTP/1.1 load generator")]
struct Args {
    /// Target, e.g. http://127.0.0.1:8080/v1/verify
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "GET")]
    method: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// A file with one request body per line, sent round-robin.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Requests per second over all connections (open loop); closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Send exactly this many requests over all connections (closed loop, no warm-up, no time
    /// limit), then exit; with `--connections 1`, all on one keep-alive connection.
    #[arg(long, conflicts_with_all = ["rate", "duration", "warmup"])]
    requests: Option<u64>,
    /// Seconds before an unanswered request counts as an error.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Text every 2xx answer must contain, e.g. '"valid":true'; other answers count as failures.
    #[arg(long)]
    expect: Option<String>,
    /// Also report the CPU share this process (the server) used in the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also report the CPU share this process (the upstream behind a proxy) used in the measured
    /// window, as `upstream_cpu`.
    #[arg(long)]
    upstream_pid: Option<u32>,
    /// `key=value` added to the JSON output (repeatable); numbers stay numbers.
    #[arg(long = "label")]
    labels: Vec<String>,
}

fn labels(args: &Args) -> Result<serde_json::Map<String, Value>, String> {
    let mut out = serde_json::Map::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| format!("bad label {l:?}: expected key=value"))?;
        let value = if let Ok(i) = v.parse::<i64>() {
            Value::from(i)
        } else if let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            Value::Number(n)
        } else {
            Value::String(v.to_owned())
        };
        out.insert(k.to_owned(), value);
    }
    Ok(out)
}

/// The address and the `Host` and path of an `http://host:port/path` URL.
fn target(url: &str) -> Result<(SocketAddr, String, String), String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("bad url {url}: only http:// is supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("bad url {url}: no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = (authority.host(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", authority.host()))?
        .next()
        .ok_or_else(|| format!("cannot resolve {}", authority.host()))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    Ok((addr, authority.as_str().to_owned(), path))
}

fn bodies(args: &Args) -> Result<Vec<String>, String> {
    Ok(match (&args.body, &args.body_file) {
        (Some(b), _) => vec![b.clone()],
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let bodies: Vec<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect();
            if bodies.is_empty() {
                return Err(format!("{}: no bodies", f.display()));
            }
            bodies
        }
        (None, None) => vec![String::new()],
    })
}

fn config(args: &Args) -> Result<LoadConfig, String> {
    let (addr, host, path) = target(&args.url)?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|e| format!("bad method: {e}"))?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("bad header {h:?}: expected `Name: value`"))?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| format!("{h:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| format!("{h:?}: {e}"))?;
        if name == header::HOST || name == header::CONTENT_LENGTH {
            return Err(format!("{name} is set by bench-load"));
        }
        let value = value
            .to_str()
            .map_err(|e| format!("{h:?}: {e}"))?
            .to_owned();
        headers.push((name.as_str().to_owned(), value));
    }
    let bodies = bodies(args)?;
    if bodies.iter().any(|b| !b.is_empty())
        && !headers
            .iter()
            .any(|(n, _)| n == header::CONTENT_TYPE.as_str())
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok(LoadConfig {
        addr,
        requests: bodies
            .iter()
            .map(|b| {
                http1::serialize_request(method.as_str(), &path, &host, &headers, b.as_bytes())
            })
            .collect(),
        connections: args.connections,
        duration: seconds(args.duration, "--duration")?,
        warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
        timeout: seconds(args.timeout, "--timeout")?,
        rate: match args.rate {
            Some(r) if r.is_finite() && r > 0.0 => Some(r),
            Some(r) => return Err(format!("bad --rate {r}")),
            None => None,
        },
        count: match args.requests {
            Some(0) => return Err("--requests must be at least 1".into()),
            n => n,
        },
        expect: args.expect.as_ref().map(|e| e.as_bytes().to_vec()),
    })
}

fn seconds(v: f64, flag: &str) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{flag} must be a positive number of seconds"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (config, labels) = match config(&args).and_then(|c| Ok((c, labels(&args)?))) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (connections, target, counted, warmup, duration) = (
        config.connections,
        config.rate,
        config.count,
        config.warmup,
        config.duration,
    );
    // CPU shares over the measured window: the server's, the upstream's, this process' own and
    // the whole machine's (in cores), each sampled by a task that starts after the warm-up.
    let (report, [server_cpu, upstream_cpu, client_cpu, machine_cpu]) = runtime.block_on(async {
        let sample = |pid: Option<u32>| {
            tokio::spawn(async move {
                tokio::time::sleep(warmup).await;
                match pid {
                    Some(pid) => cpu::busy_share(pid, duration).await,
                    None => None,
                }
            })
        };
        let samplers = [
            sample(args.server_pid),
            sample(args.upstream_pid),
            sample(Some(std::process::id())),
            tokio::spawn(async move {
                tokio::time::sleep(warmup).await;
                cpu::machine_busy_cores(duration).await
            }),
        ];
        let report = load::run(config).await;
        let mut shares = [None; 4];
        for (share, task) in shares.iter_mut().zip(samplers) {
            // A counted run has no fixed window to sample: no CPU shares.
            if counted.is_some() {
                task.abort();
            } else {
                *share = task.await.ok().flatten();
            }
        }
        (report, shares)
    });
    let mut out = labels;
    out.extend(
        json!({
            "requests": report.answered(),
            "rps": report.rps().round(),
            "non_2xx": report.non_2xx,
            "unexpected": report.unexpected,
            "errors": report.errors,
            "connections": connections,
            "duration_s": report.elapsed.as_secs_f64(),
            "target_rps": target,
            "target_requests": counted,
            "client_cpu": client_cpu,
            "server_cpu": server_cpu,
            "upstream_cpu": upstream_cpu,
            "machine_cpu": machine_cpu,
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    if let Value::Object(l) = latency::summary(&report.histogram) {
        out.extend(l);
    }
    println!("{}", Value::Object(out));
    if report.failure_ratio() > MAX_FAILURE_RATIO {
        eprintln!(
            "bench-load: {} non-2xx answers, {} 2xx answers without the expected text and {} \
             errors out of {} requests: the setup is broken",
            report.non_2xx,
            report.unexpected,
            report.errors,
            report.answered() + report.errors
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["bench-load", "--url", "http://127.0.0.1:1/"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn requests_makes_a_counted_run() {
        let c = config(&parse(&["--requests", "1000", "--connections", "1"]).unwrap()).unwrap();
        assert_eq!((c.count, c.connections, c.rate), (Some(1000), 1, None));
        let c = config(&parse(&[]).unwrap()).unwrap();
        assert_eq!(c.count, None, "a run by time without --requests");
        assert!(config(&parse(&["--requests", "0"]).unwrap()).is_err());
    }

    #[test]
    fn requests_excludes_the_time_and_rate_settings() {
        for other in [["--rate", "10"], ["--duration", "1"], ["--warmup", "1"]] {
            let mut argv = vec!["--requests", "5"];
            argv.extend_from_slice(&other);
            assert!(parse(&argv).is_err(), "--requests with {other:?}");
        }
    }
}
