//! Log output: JSON (default) or text on stderr, with the request id on every line logged while
//! a request is handled.
//!
//! The id comes from the request's task-local (set by [`crate::request_id::around`]) and is added
//! when a line is written, instead of opening a tracing span per request: a span costs every
//! request (it is created, formatted and closed even when nothing is logged), while this costs
//! only the requests that log.
use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{self, JsonFields, Writer},
    },
    registry::LookupSpan,
};

use crate::request_id;

/// Installs the log subscriber: `format` is `json` or `text`, `level` a tracing filter.
pub fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "text" {
        builder
            .event_format(WithRequestId {
                inner: format::Format::default(),
                json: false,
            })
            .try_init()
    } else {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(WithRequestId {
                inner: format::Format::default().json().flatten_event(true),
                json: true,
            })
            .try_init()
    };
}

/// Wraps an event format: while a request is handled, its id goes into the line (a
/// `"request_id"` field first in JSON, `request_id=…` in front of the fields in text).
#[derive(Debug)]
pub struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(id) = request_id::current() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        // Request ids are `[A-Za-z0-9._:-]` (incoming ones are checked): nothing to escape.
        if self.json && line.starts_with('{') {
            writer.write_str("{\"request_id\":\"")?;
            writer.write_str(&id)?;
            writer.write_str("\",")?;
            writer.write_str(&line[1..])
        } else {
            writer.write_str("request_id=")?;
            writer.write_str(&id)?;
            writer.write_str(" ")?;
            writer.write_str(&line)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn lines_of_a_request_carry_its_id() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(WithRequestId {
                inner: format::Format::default().json().flatten_event(true),
                json: true,
            })
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        tracing::info!(n = 1, "outside");
        request_id::scope_for_test("req_abc", async {
            tracing::info!(n = 2, "inside");
        })
        .await;
        let out = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].get("request_id").is_none());
        assert_eq!(lines[1]["request_id"], "req_abc");
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["n"], 2);
    }
}
