//! A resilient consumer of `GET /v1/events` (see `docs/events.md`).
//!
//! ```text
//! PORTCULLIS_URL=http://127.0.0.1:8080 PORTCULLIS_ADMIN_KEY=pc_admin_… \
//!   cargo run -p portcullis-server --example event_consumer -- \
//!   [--state FILE] [--types key.created,key.revoked] [--idle SECONDS]
//! ```
//!
//! It prints each event as one JSON line on stdout, at least once and in id order:
//! - the key travels in `Authorization: Bearer`, never in the URL;
//! - the id of the last event handled is written to the state file (default
//!   `event-consumer.last-id`) after the event is handled, and sent as `Last-Event-ID` when it
//!   (re)connects, so nothing is missed across disconnects and restarts;
//! - an event whose id is not above the last one handled is skipped (de-duplication);
//! - it honours `retry:`, and the `reconnect` frame the server sends before it closes a stream
//!   (slow consumer, shutdown, backend failure): it reconnects after that frame's `id`;
//! - failures back off exponentially (with jitter) up to a minute; a refusal that retrying
//!   cannot fix (400, 401, 403, 404) stops it;
//! - a stream silent for longer than `--idle` (default 45 s: three heartbeats) is reconnected.
//!
//! Run it apart from the server: the server treats unknown `PORTCULLIS_*` variables in its own
//! environment as configuration mistakes. The example speaks plain HTTP (reqwest is built without
//! TLS in this workspace); put it next to the server or behind a local TLS-terminating proxy.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use futures_util::StreamExt;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A dispatched SSE message.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    /// The last event id after this message (`None`: never set).
    id: Option<String>,
    /// `event:` (default `message`).
    event: String,
    data: String,
}

/// An SSE parser following the WHATWG "event stream interpretation" rules: lines end with CRLF,
/// LF or CR; `:` starts a comment; `data:` lines are joined with `\n`; a blank line dispatches;
/// `id:` persists across messages; `retry:` takes digits only.
#[derive(Debug, Default)]
struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    data: String,
    event: String,
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Message>) {
        let mut bytes = bytes;
        if !self.started && !bytes.is_empty() {
            self.started = true;
            bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
        }
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                b'\n' => self.end_line(out),
                _ => self.line.push(b),
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<Message>) {
        let raw = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&raw);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match name {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok().map(Duration::from_millis);
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Message>) {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        data.pop();
        out.push(Message {
            id: self.last_id.clone(),
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
        });
    }
}

struct Settings {
    url: String,
    key: String,
    state: PathBuf,
    types: Option<String>,
    idle: Duration,
}

/// How a connection ended.
enum End {
    /// The server told us to reconnect (or closed the stream cleanly).
    Reconnect,
    /// A transient failure (connection, 5xx, silence): back off.
    Failed(String),
}

fn settings() -> Result<Settings, Error> {
    let url = std::env::var("PORTCULLIS_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("PORTCULLIS_ADMIN_KEY")
        .map_err(|_| "set PORTCULLIS_ADMIN_KEY to an admin key with the scope events:read")?;
    let mut s = Settings {
        url: url.trim_end_matches('/').to_owned(),
        key,
        state: PathBuf::from("event-consumer.last-id"),
        types: None,
        idle: Duration::from_secs(45),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--state" => s.state = PathBuf::from(value()?),
            "--types" => s.types = Some(value()?),
            "--idle" => s.idle = Duration::from_secs(value()?.parse()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(s)
}

fn load_position(path: &Path) -> Result<Option<u64>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().parse()?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the position atomically (a crash leaves the old or the new one, never half of one).
fn save_position(path: &Path, id: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(tmp, path)
}

/// Handles one event. Here: print it. Make it idempotent by event id: after a crash between
/// handling and saving the position, the event comes again.
fn handle(m: &Message) {
    println!("{}", m.data);
}

/// One connection: reads until the stream ends; `Err` for a refusal retrying cannot fix.
async fn consume(
    client: &reqwest::Client,
    s: &Settings,
    position: &mut Option<u64>,
    retry: &mut Duration,
) -> Result<End, Error> {
    let mut req = client
        .get(format!("{}/v1/events", s.url))
        .bearer_auth(&s.key)
        .header("accept", "text/event-stream");
    if let Some(types) = &s.types {
        req = req.query(&[("types", types)]);
    }
    if let Some(id) = position {
        req = req.header("last-event-id", id.to_string());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Ok(End::Failed(format!("connect: {e}"))),
    };
    let status = resp.status();
    if matches!(status.as_u16(), 400 | 401 | 403 | 404) {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("refused with {status}: {body}").into());
    }
    if !status.is_success() {
        if let Some(secs) = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            *retry = (*retry).max(Duration::from_secs(secs));
        }
        return Ok(End::Failed(format!("answered {status}")));
    }
    eprintln!("connected; resuming after {position:?}");
    let mut body = resp.bytes_stream();
    let mut parser = Parser::default();
    let mut messages = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(s.idle, body.next()).await {
            Err(_) => return Ok(End::Failed("no heartbeat in time".into())),
            Ok(None) => return Ok(End::Reconnect),
            Ok(Some(Err(e))) => return Ok(End::Failed(format!("read: {e}"))),
            Ok(Some(Ok(c))) => c,
        };
        parser.feed(&chunk, &mut messages);
        if let Some(r) = parser.retry {
            *retry = r;
        }
        for m in messages.drain(..) {
            let id = m.id.as_deref().and_then(|i| i.parse::<u64>().ok());
            if m.event == "reconnect" {
                eprintln!("server asks to reconnect: {}", m.data);
                if let Some(id) = id {
                    *position = Some(position.map_or(id, |p| p.max(id)));
                    save_position(&s.state, position.unwrap_or(id))?;
                }
                return Ok(End::Reconnect);
            }
            let Some(id) = id else { continue };
            if position.is_some_and(|p| id <= p) {
                continue; // already handled
            }
            handle(&m);
            *position = Some(id);
            save_position(&s.state, id)?;
        }
    }
}

/// A pseudo-random factor in [0.5, 1.0) for backoff jitter.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    0.5 + f64::from(nanos % 1_000) / 2_000.0
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let s = settings()?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let mut position = load_position(&s.state)?;
    let mut retry = Duration::from_secs(3);
    let mut failures: u32 = 0;
    loop {
        let wait = match consume(&client, &s, &mut position, &mut retry).await? {
            End::Reconnect => {
                failures = 0;
                retry
            }
            End::Failed(why) => {
                failures = failures.saturating_add(1);
                let backoff = retry
                    .saturating_mul(1 << failures.min(5))
                    .min(Duration::from_secs(60));
                let wait = backoff.mul_f64(jitter());
                eprintln!("{why}; retrying in {wait:?}");
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> (Vec<Message>, Parser) {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c.as_bytes(), &mut out);
        }
        (out, p)
    }

    #[test]
    fn frames_follow_the_whatwg_rules() {
        let (out, p) = parse(&[
            "\u{feff}retry: 1500\n\n: heartbeat\n\nid: 7\nevent: key.created\ndata: {\"a\":1}\n\n",
            "data: one\r\ndata:two\r\rid: 8\nda",
            "ta: x\n\nevent: ignored-without-data\n\ndata\n\n",
        ]);
        assert_eq!(p.retry, Some(Duration::from_millis(1500)));
        let m = |id: &str, event: &str, data: &str| Message {
            id: Some(id.into()),
            event: event.into(),
            data: data.into(),
        };
        assert_eq!(
            out,
            vec![
                m("7", "key.created", "{\"a\":1}"),
                m("7", "message", "one\ntwo"),
                m("8", "message", "x"),
                m("8", "message", ""),
            ]
        );
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        let (out, _) = parse(&["data: a\r", "\n\r", "\n"]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, "a");
    }
}
