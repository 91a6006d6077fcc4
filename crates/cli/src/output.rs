//! Output of operator commands: JSON, or a plain table for people. Secrets go to stdout only.
use std::{io::Write, path::Path};

use portcullis_core::ratelimit::RateLimit;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug)]
pub struct Output {
    json: bool,
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// A table cell of field `name`: a rate limit (a key's or tenant's, or a tenant's ceiling) in the
/// form the CLI takes (`100/60:20`), anything
/// else by [`cell`].
fn field_cell(name: &str, v: Option<&Value>) -> String {
    if matches!(name, "rate_limit" | "max_key_rate_limit")
        && let Some(limit) = v.and_then(|v| RateLimit::deserialize(v).ok())
    {
        return limit.to_string();
    }
    cell(v)
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether the output is JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One object.
    pub fn one<T: Serialize>(&self, item: &T) {
        let v = serde_json::to_value(item).unwrap_or(Value::Null);
        if self.json {
            emit(&serde_json::to_string_pretty(&v).unwrap_or_default());
            return;
        }
        if let Value::Object(map) = &v {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in map {
                emit(&format!("{k:<width$}  {}", field_cell(k, Some(val))));
            }
        }
    }

    /// A list, as a table with `columns`.
    pub fn list<T: Serialize>(&self, items: &[T], columns: &[&str]) {
        let rows: Vec<Value> = items
            .iter()
            .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
            .collect();
        if self.json {
            emit(&serde_json::to_string_pretty(&rows).unwrap_or_default());
            return;
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| columns.iter().map(|c| field_cell(c, r.get(*c))).collect())
            .collect();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(c.len())
            })
            .collect();
        let line = |vals: Vec<String>| {
            vals.iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        emit(&line(columns.iter().map(|c| c.to_uppercase()).collect()));
        for r in cells {
            emit(&line(r));
        }
    }

    /// A created object with its secret, shown this once.
    pub fn created(&self, body: Value, secret: &str) {
        if self.json {
            emit(&serde_json::to_string_pretty(&body).unwrap_or_default());
            return;
        }
        let record = body
            .get("key")
            .or_else(|| body.get("admin_key"))
            .cloned()
            .unwrap_or(Value::Null);
        self.one(&record);
        if let Some(prev) = body
            .get("previous_secret_expires_at")
            .and_then(Value::as_str)
        {
            emit(&format!(
                "\nThe previous secret keeps working until {prev}."
            ));
        }
        emit("\nSecret (shown once, store it now):");
        emit(secret);
    }
}

/// Prints the root admin key created on first start: to stdout, never into the log stream.
pub fn print_root_key(id: &str, secret: &str, data_dir: &Path) {
    emit(&format!(
        "portcullis: first start, created the root admin key {id}.\n\
         Its secret is shown this once; store it now:\n\n{secret}\n\n\
         Create more admin keys with:\n  portcullis admin-key create --data-dir {} --name NAME [--tenant TENANT] [--scopes keys:read,keys:write]\n",
        data_dir.display()
    ));
}
