//! What the NATS backend puts on the wire: subjects, the JSON body of a stored event, and URLs
//! with their credentials taken out (for error texts and `Debug`).
use portcullis_core::tenant::TenantId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Event, EventType, NewEvent, Scope, TypeSet, to_micros};

/// The subject of an event: `{prefix}.{tenant_token}.{type}` (the type has a dot of its own).
pub(crate) fn subject(prefix: &str, e: &NewEvent) -> String {
    format!("{prefix}.{}.{}", e.tenant_token(), e.kind.as_str())
}

/// The filter subject of a reader: one tenant's events (`{prefix}.{tenant}.>`) or every one
/// (`{prefix}.>`); narrowed to the exact type when the scope has a single type, so the server
/// sends nothing the reader would drop.
pub(crate) fn filter_subject(prefix: &str, scope: &Scope) -> String {
    let tenant = scope.tenant.as_ref().map_or("*", TenantId::as_str);
    match single_type(scope.types) {
        Some(t) => format!("{prefix}.{tenant}.{}", t.as_str()),
        None if scope.tenant.is_some() => format!("{prefix}.{tenant}.>"),
        None => format!("{prefix}.>"),
    }
}

fn single_type(types: TypeSet) -> Option<EventType> {
    let mut it = types.iter();
    match (it.next(), it.next()) {
        (Some(t), None) => Some(t),
        _ => None,
    }
}

/// The body of a stored message. The id is not in it: it is the message's stream sequence.
#[derive(Serialize)]
struct BodyOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tenant: Option<&'a str>,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    data: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct BodyIn {
    #[serde(rename = "type")]
    kind: String,
    tenant: Option<TenantId>,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    data: serde_json::Value,
}

/// The JSON body of `e` (its time to the microsecond, as every backend keeps it); fails only for a time that RFC 3339 cannot hold.
pub(crate) fn encode(e: &NewEvent) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&BodyOut {
        kind: e.kind.as_str(),
        tenant: e.tenant.as_ref().map(TenantId::as_str),
        time: to_micros(e.time),
        data: &e.data,
    })
}

/// The event stored at `seq` with body `payload`; `None` when the body is not one this version
/// reads (a type added by a newer node, or a message that is not ours): such a message is
/// skipped, never an error that would stop every replay at it.
pub(crate) fn decode(seq: u64, payload: &[u8]) -> Option<Event> {
    let body: BodyIn = serde_json::from_slice(payload).ok()?;
    let kind = EventType::parse(&body.kind)?;
    Some(Event {
        id: seq,
        kind,
        tenant: body.tenant,
        time: to_micros(body.time),
        data: body.data,
    })
}

/// Whether the message on `subject` with `event` decoded from its body agree on tenant and
/// type (a message published by hand on another tenant's subject is not trusted).
pub(crate) fn subject_matches(prefix: &str, subject: &str, event: &Event) -> bool {
    subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(tenant, kind)| tenant == event.tenant_token() && kind == event.kind.as_str())
}

/// The server URLs (comma-separated) with any `user:password@` or `token@` replaced by `***@`.
pub(crate) fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let u = u.trim();
            let (scheme, rest) = u.split_once("://").map_or(("", u), |(s, r)| (s, r));
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let creds = if authority.contains('@') { "***@" } else { "" };
            if scheme.is_empty() {
                format!("{creds}{host}{path}")
            } else {
                format!("{scheme}://{creds}{host}{path}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The secret parts of the URLs (passwords of `user:password@`, tokens of `token@`), to scrub
/// from texts. User names are not secret (and short ones would mangle any text); secrets of
/// fewer than 3 characters protect nothing and are left too.
pub(crate) fn url_secrets(urls: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    for u in urls.split(',') {
        let rest = u.trim().split_once("://").map_or(u.trim(), |(_, r)| r);
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            let secret = userinfo.split_once(':').map_or(userinfo, |(_, pw)| pw);
            if secret.len() >= 3 {
                secrets.push(secret.to_owned());
            }
        }
    }
    // The longest first, so a secret that holds another goes whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// `text` with every one of `secrets` replaced by `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn subjects_and_filters() {
        let e = NewEvent::new(
            EventType::KeyCreated,
            Some(acme()),
            OffsetDateTime::UNIX_EPOCH,
            serde_json::json!({}),
        );
        assert_eq!(subject("p.e", &e), "p.e.acme.key.created");
        let sys = NewEvent::new(
            EventType::AuditDegraded,
            None,
            OffsetDateTime::UNIX_EPOCH,
            serde_json::json!({}),
        );
        assert_eq!(subject("p.e", &sys), "p.e._system.audit.degraded");
        assert_eq!(filter_subject("p.e", &Scope::tenant(acme())), "p.e.acme.>");
        assert_eq!(filter_subject("p.e", &Scope::global()), "p.e.>");
        let mut one = TypeSet::none();
        one.insert(EventType::KeyRevoked);
        assert_eq!(
            filter_subject("p.e", &Scope::tenant(acme()).with_types(one)),
            "p.e.acme.key.revoked"
        );
        assert_eq!(
            filter_subject("p.e", &Scope::global().with_types(one)),
            "p.e.*.key.revoked"
        );
        let mut two = one;
        two.insert(EventType::KeyCreated);
        assert_eq!(
            filter_subject("p.e", &Scope::tenant(acme()).with_types(two)),
            "p.e.acme.>"
        );
    }

    #[test]
    fn bodies_round_trip_and_unknown_ones_are_skipped() {
        let e = NewEvent::new(
            EventType::KeyRolled,
            Some(acme()),
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            serde_json::json!({"key_id": "k1"}),
        );
        let body = encode(&e).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "key.rolled");
        assert_eq!(json["tenant"], "acme");
        assert_eq!(json["time"], "2023-11-14T22:13:20Z");
        let back = decode(7, &body).unwrap();
        assert_eq!(back, e.clone().into_event(7));
        assert!(subject_matches("p.e", "p.e.acme.key.rolled", &back));
        assert!(!subject_matches("p.e", "p.e.other.key.rolled", &back));
        assert!(!subject_matches("p.e", "p.e.acme.key.created", &back));
        assert!(!subject_matches("p.e", "p.x.acme.key.rolled", &back));
        assert!(
            decode(
                1,
                br#"{"type":"key.future","tenant":null,"time":"2023-11-14T22:13:20Z","data":{}}"#
            )
            .is_none()
        );
        assert!(decode(1, b"not json").is_none());
        assert!(decode(1, br#"{"type":"key.created","tenant":"_system","time":"2023-11-14T22:13:20Z","data":{}}"#).is_none());
    }

    #[test]
    fn urls_lose_their_credentials() {
        let url = "nats://admin:s3cr3t@127.0.0.1:4222,tls://tok3n@nats.example:4222/x";
        let shown = redact_url(url);
        assert_eq!(
            shown,
            "nats://***@127.0.0.1:4222,tls://***@nats.example:4222/x"
        );
        let secrets = url_secrets(url);
        let text = scrub("auth failed for admin:s3cr3t and tok3n", &secrets);
        assert!(
            !text.contains("s3cr3t") && !text.contains("tok3n"),
            "{text}"
        );
        assert_eq!(redact_url("127.0.0.1:4222"), "127.0.0.1:4222");
        assert!(url_secrets("nats://127.0.0.1:4222").is_empty());
    }
}
