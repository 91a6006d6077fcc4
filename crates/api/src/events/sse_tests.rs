//! Tests of `sse.rs`.
use super::*;

fn headers(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            LAST_EVENT_ID.clone(),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

#[test]
fn last_event_ids_are_decimal() {
    assert_eq!(last_event_id(&headers(&[])).expect("none"), None);
    assert_eq!(last_event_id(&headers(&["42"])).expect("42"), Some(42));
    assert_eq!(last_event_id(&headers(&["0"])).expect("0"), Some(0));
    for bad in ["", "x", "+1", "-1", "1.0", "99999999999999999999", "0x10"] {
        assert_eq!(
            last_event_id(&headers(&[bad])).err().map(|e| e.code),
            Some("invalid_last_event_id"),
            "{bad:?}"
        );
    }
    assert!(last_event_id(&headers(&["1", "2"])).is_err());
}
