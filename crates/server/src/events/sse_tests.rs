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

#[test]
fn owner_places_are_bounded_per_tenant_and_key() {
    let streams = Streams::default();
    let caps = OwnerCaps {
        per_tenant: 2,
        per_key: 2,
    };
    let a = OwnerPlace::take(&streams, Some("acme"), "k1", caps).expect("a");
    let _b = OwnerPlace::take(&streams, Some("beta"), "k1", caps).expect("b");
    assert!(
        OwnerPlace::take(&streams, None, "k1", caps).is_none(),
        "k1 has two"
    );
    let _c = OwnerPlace::take(&streams, Some("acme"), "k2", caps).expect("c");
    assert!(
        OwnerPlace::take(&streams, Some("acme"), "k3", caps).is_none(),
        "acme has two"
    );
    let _d = OwnerPlace::take(&streams, None, "k3", caps).expect("global: no tenant cap");
    drop(a);
    let _e = OwnerPlace::take(&streams, Some("acme"), "k1", caps).expect("given back");
    drop((_b, _c, _d, _e));
    let o = streams.owners.lock().expect("lock");
    assert!(o.keys.is_empty() && o.tenants.is_empty());
}

#[test]
fn places_are_bounded_and_given_back() {
    let streams = Streams::default();
    let gauge = Gauge::default();
    let a = Place::take(&streams, &gauge, 2).expect("first");
    let b = Place::take(&streams, &gauge, 2).expect("second");
    assert!(Place::take(&streams, &gauge, 2).is_none());
    assert_eq!(gauge.get(), 2);
    drop(a);
    assert_eq!(gauge.get(), 1);
    let _c = Place::take(&streams, &gauge, 2).expect("a place came free");
    drop(b);
    assert_eq!(streams.open.load(Ordering::Relaxed), 1);
}
