//! A key's metadata: a small, bounded JSON object the vendor attaches (plan, customer name, …).
use serde_json::{Map, Value};

use crate::{error::ValidationError, limits};

/// Validates a metadata object against the limits in [`limits`].
pub fn validate(meta: &Map<String, Value>) -> Result<(), ValidationError> {
    if meta.len() > limits::MAX_METADATA_KEYS {
        return Err(ValidationError::InvalidMetadata("too many fields"));
    }
    if meta
        .keys()
        .any(|k| k.is_empty() || k.len() > limits::MAX_METADATA_KEY_LEN)
    {
        return Err(ValidationError::InvalidMetadata(
            "field names must be 1 to 64 bytes",
        ));
    }
    if meta
        .values()
        .any(|v| depth(v) + 1 > limits::MAX_METADATA_DEPTH)
    {
        return Err(ValidationError::InvalidMetadata("nested too deeply"));
    }
    let size = serde_json::to_vec(meta)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > limits::MAX_METADATA_BYTES {
        return Err(ValidationError::InvalidMetadata("larger than 4096 bytes"));
    }
    Ok(())
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn limits_hold() {
        assert!(validate(&obj(json!({"plan": "pro", "seats": 5, "tags": ["a"]}))).is_ok());
        assert!(validate(&obj(json!({"a": {"b": {"c": 1}}}))).is_ok());
        assert!(validate(&obj(json!({"a": {"b": {"c": {"d": 1}}}}))).is_ok());
        assert!(validate(&obj(json!({"a": {"b": {"c": {"d": {"e": 1}}}}}))).is_err());
        assert!(validate(&obj(json!({"big": "x".repeat(5000)}))).is_err());
        let many: Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(validate(&many).is_err());
        assert!(validate(&obj(json!({"": 1}))).is_err());
    }
}
