//! Records of authentication failures, and client addresses as the audit log keeps them (as
//! seen, or pseudonymised per tenant).
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use portcullis_audit::{Decision, Kind, Record};
use portcullis_core::{OffsetDateTime, hash::Pepper, tenant::TenantId};
use serde_json::Value;
use sha2::Sha256;

use crate::config::ClientIpMode;

/// The client address as the audit log keeps it: as seen, or pseudonymised per tenant.
pub fn client_ip(mode: ClientIpMode, pepper: &Pepper, tenant: Option<&str>, ip: IpAddr) -> String {
    let ip = portcullis_core::ip::canonical(ip);
    match mode {
        ClientIpMode::Store => ip.to_string(),
        ClientIpMode::Pseudonymise => pseudonym(pepper, tenant.unwrap_or(""), ip),
    }
}

/// HMAC-SHA256(per-tenant key, address), where the per-tenant key is HMAC-SHA256(pepper,
/// label ‖ tenant): stable within a tenant, unlinkable across tenants without the pepper.
fn pseudonym(pepper: &Pepper, tenant: &str, ip: IpAddr) -> String {
    let tenant_key = pepper.hash(&format!("portcullis.audit.client-ip.v1\n{tenant}"));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&tenant_key.0)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(ip.to_string().as_bytes());
    format!("ip_{}", hex::encode(&mac.finalize().into_bytes()[..16]))
}

/// An authentication failure record: the precise reason and the key's non-secret hint (never
/// the secret; `None` for a credential that is not a well-formed key).
pub fn auth_failure(
    time: OffsetDateTime,
    tenant: Option<&TenantId>,
    reason: &str,
    hint: Option<String>,
    request_id: Option<String>,
) -> Record {
    let mut r = Record::new(time, Kind::Auth, "auth.failure");
    r.tenant = tenant.map(|t| t.as_str().to_owned());
    r.decision = Some(Decision::Deny);
    r.reason = Some(reason.to_owned());
    r.request_id = request_id;
    r.data
        .insert("key_hint".into(), hint.map_or(Value::Null, Value::String));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_tenant_and_differ_across_tenants() {
        let (pepper, _) = Pepper::generate();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        let mode = ClientIpMode::Pseudonymise;
        let a = client_ip(mode, &pepper, Some("acme"), ip);
        assert_eq!(a, client_ip(mode, &pepper, Some("acme"), ip));
        assert_ne!(a, client_ip(mode, &pepper, Some("beta"), ip));
        assert_ne!(a, client_ip(mode, &pepper, Some("acme"), other));
        assert!(!a.contains("192.0.2"));
        // IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(a, client_ip(mode, &pepper, Some("acme"), mapped));
        assert_eq!(
            client_ip(ClientIpMode::Store, &pepper, Some("acme"), ip),
            "192.0.2.7"
        );
    }
}
