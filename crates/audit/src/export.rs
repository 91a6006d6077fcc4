//! Export: a chain's entries matching a filter, streamed page by page (constant memory) as
//! NDJSON or CSV.
use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    record::{Digest, Entry, Record},
    store::{AuditFilter, AuditStore, AuditStoreError},
};

/// Entries read from the store per page.
pub const PAGE: u32 = 1_000;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line ([`ExportedEntry`]).
    Ndjson,
    /// A header line, then one row per entry; `data` is a JSON string.
    Csv,
}

/// An entry as exports and the HTTP API show it: the sealed record's fields plus its place in
/// the chain.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedEntry {
    pub chain: String,
    pub seq: u64,
    pub hash: Digest,
    pub prev_hash: Digest,
    #[serde(flatten)]
    pub record: Record,
}

impl ExportedEntry {
    /// The entry with its record read from the body.
    pub fn of(entry: &Entry) -> Result<Self, AuditStoreError> {
        let record = entry.record().map_err(|_| {
            AuditStoreError::Corrupt(format!(
                "chain {} entry {}: body is not a record",
                entry.chain, entry.seq
            ))
        })?;
        Ok(Self {
            chain: entry.chain.clone(),
            seq: entry.seq,
            hash: entry.hash,
            prev_hash: entry.prev_hash,
            record,
        })
    }
}

/// An export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] AuditStoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the export: {0}")]
    Csv(#[from] csv::Error),
}

const CSV_HEADER: [&str; 14] = [
    "chain",
    "seq",
    "hash",
    "prev_hash",
    "time",
    "kind",
    "action",
    "tenant",
    "actor",
    "key_id",
    "request_id",
    "decision",
    "reason",
    "data",
];

fn csv_row(e: &ExportedEntry) -> [String; 14] {
    let r = &e.record;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let time = r
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    [
        e.chain.clone(),
        e.seq.to_string(),
        e.hash.to_hex(),
        e.prev_hash.to_hex(),
        time,
        r.kind.as_str().to_owned(),
        r.action.clone(),
        opt(&r.tenant),
        opt(&r.actor),
        opt(&r.key_id),
        opt(&r.request_id),
        r.decision
            .map(|d| d.as_str().to_owned())
            .unwrap_or_default(),
        opt(&r.reason),
        if r.data.is_empty() {
            String::new()
        } else {
            Value::Object(Map::clone(&r.data)).to_string()
        },
    ]
}

/// Writes the entries of `chain` that match `filter` to `out`, reading [`PAGE`] entries at a
/// time. Returns how many were written.
pub async fn export<W: Write>(
    store: &dyn AuditStore,
    chain: &str,
    filter: &AuditFilter,
    format: Format,
    out: W,
) -> Result<u64, ExportError> {
    let mut csv_out = None;
    let mut json_out = None;
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_HEADER)?;
            csv_out = Some(w);
        }
        Format::Ndjson => json_out = Some(std::io::BufWriter::new(out)),
    }
    let (mut after, mut written) = (0u64, 0u64);
    loop {
        let page = store.search(chain, filter, after, PAGE).await?;
        for entry in &page {
            let exported = ExportedEntry::of(entry)?;
            if let Some(w) = csv_out.as_mut() {
                w.write_record(csv_row(&exported))?;
            }
            if let Some(w) = json_out.as_mut() {
                serde_json::to_writer(&mut *w, &exported).map_err(std::io::Error::from)?;
                w.write_all(b"\n")?;
            }
            written += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = last.seq,
            _ => break,
        }
    }
    if let Some(mut w) = csv_out {
        w.flush()?;
    }
    if let Some(mut w) = json_out {
        w.flush()?;
    }
    Ok(written)
}
