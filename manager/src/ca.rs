//! The cluster's certificate authority: the root CA `swarm init` makes, node keys and their
//! signing requests, the node certificates a manager issues and the admin client certificates
//! (rcgen). Node and admin certificates expire: `not_after` is the issue time plus the
//! cluster's `--cert-expiry`. What the certificates carry, and the TLS configurations built from
//! them, are `mesh_api::tls`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use mesh_api::tls::{ADMIN_NAME, role_name};
use mesh_cluster::Id;
use mesh_cluster::certs::{CERT_BACKDATE_SECS, MIN_CERT_EXPIRY_MS};
use mesh_cluster::state::NodeRole;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

const CA_NAME: &str = "meshd-ca";
/// The root CA's lifetime, as Swarm's: 20 years.
const CA_EXPIRY_SECS: i64 = 20 * 365 * 24 * 3600;

/// The test-only knob that lowers the minimum `--cert-expiry` (a Go duration such as `20s`),
/// so that an e2e test can watch certificates expire and renew within minutes. Undocumented
/// for users; read by the manager that checks the expiry.
pub const MIN_CERT_EXPIRY_ENV: &str = "MESHD_MIN_CERT_EXPIRY";

/// The minimum certificate expiry this manager accepts: Swarm's hour, or what
/// [`MIN_CERT_EXPIRY_ENV`] says (a bad value is ignored, with a warning).
pub fn min_cert_expiry_ms() -> u64 {
    let Ok(text) = std::env::var(MIN_CERT_EXPIRY_ENV) else {
        return MIN_CERT_EXPIRY_MS;
    };
    match mesh_cluster::spec::parse_duration(&text) {
        Ok(ms) if ms >= 1_000 => ms,
        _ => {
            tracing::warn!(
                "{MIN_CERT_EXPIRY_ENV}={text:?} is not a duration of at least 1s; using 1h"
            );
            MIN_CERT_EXPIRY_MS
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn date(secs: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs).context("a certificate date out of range")
}

/// `params` valid from a little before `now` (clock skew) for `expiry_ms`.
fn set_validity(params: &mut CertificateParams, now: i64, expiry_ms: u64) -> Result<()> {
    let expiry = i64::try_from(expiry_ms / 1000).context("a certificate expiry out of range")?;
    params.not_before = date(now - CERT_BACKDATE_SECS)?;
    params.not_after = date(now.saturating_add(expiry))?;
    Ok(())
}

/// A new root CA for cluster `cluster_id`: (certificate PEM, key PEM).
pub fn generate_ca(cluster_id: &Id) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let cert = ca_params(cluster_id, CA_NAME)?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The root that replaces `current` in a rotation: (certificate, key, the certificate signed by
/// `current`, through which nodes that trust only the current root accept the new one's
/// certificates). It has its own name, so that no chain mistakes one root for the other.
pub fn generate_rotated_ca(
    cluster_id: &Id,
    current: &CaKeys<'_>,
) -> Result<(String, String, String)> {
    let key = KeyPair::generate()?;
    let params = ca_params(cluster_id, &format!("{CA_NAME}-{}", Id::random()))?;
    let cert = params.self_signed(&key)?;
    let cross = params.signed_by(&key, &current.issuer()?)?;
    Ok((cert.pem(), key.serialize_pem(), cross.pem()))
}

fn ca_params(cluster_id: &Id, name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, cluster_id.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = now_secs();
    params.not_before = date(now - CERT_BACKDATE_SECS)?;
    params.not_after = date(now + CA_EXPIRY_SECS)?;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A node's private key, made on the node; only its CSR leaves it.
pub struct NodeKey(KeyPair);

impl NodeKey {
    pub fn generate() -> Result<Self> {
        Ok(Self(KeyPair::generate()?))
    }

    /// A certificate signing request (the manager decides the subject; this proves the key).
    pub fn csr_pem(&self) -> Result<String> {
        let params = CertificateParams::default();
        Ok(params.serialize_request(&self.0)?.pem()?)
    }

    pub fn key_pem(&self) -> String {
        self.0.serialize_pem()
    }
}

/// The cluster CA as rcgen signs with it: its certificate and key (PEM).
pub struct CaKeys<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

impl CaKeys<'_> {
    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let ca_key = KeyPair::from_pem(self.key_pem).context("reading the cluster CA key")?;
        Issuer::from_ca_cert_pem(self.cert_pem, ca_key).context("reading the cluster CA")
    }
}

/// Signs the key of `csr_pem` as node `node_id` with `role` in `cluster_id`, with the CA, valid
/// for `expiry_ms` from now.
pub fn issue(
    ca: &CaKeys<'_>,
    csr_pem: &str,
    cluster_id: &Id,
    node_id: &Id,
    role: NodeRole,
    expiry_ms: u64,
) -> Result<String> {
    issue_at(
        ca,
        csr_pem,
        (cluster_id, node_id, role),
        now_secs(),
        expiry_ms,
    )
}

/// [`issue`] as if the time were `now` (unix seconds): tests make expired certificates with it.
pub fn issue_at(
    ca: &CaKeys<'_>,
    csr_pem: &str,
    (cluster_id, node_id, role): (&Id, &Id, NodeRole),
    now: i64,
    expiry_ms: u64,
) -> Result<String> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| anyhow!("invalid certificate signing request: {e}"))?;
    let issuer = ca.issuer()?;
    let mut params = CertificateParams::default();
    set_validity(&mut params, now, expiry_ms)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id.as_str());
    dn.push(DnType::OrganizationalUnitName, role_name(role));
    dn.push(DnType::OrganizationName, cluster_id.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(role_name(role).try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params.signed_by(&csr.public_key, &issuer)?.pem())
}

/// An admin client certificate and its key (PEM), made on a manager: CN `name`, OU
/// [`ADMIN_NAME`], O the cluster, client authentication only, valid for `expiry_ms`. It opens
/// the cluster API (`meshctl --host tcp://... --cert-dir`), never raft or a node's session.
pub fn issue_admin(
    ca: &CaKeys<'_>,
    cluster_id: &Id,
    name: &str,
    expiry_ms: u64,
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let issuer = ca.issuer()?;
    let mut params = CertificateParams::default();
    set_validity(&mut params, now_secs(), expiry_ms)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, ADMIN_NAME);
    dn.push(DnType::OrganizationName, cluster_id.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::tls::{
        CertIdentity, CertSubject, Credentials, anonymous_client_config, ca_pem_digest,
        issuer_info, subject, validity,
    };
    use mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS;

    fn keys(ca: &(String, String)) -> CaKeys<'_> {
        CaKeys {
            cert_pem: &ca.0,
            key_pem: &ca.1,
        }
    }

    fn node(ca: &(String, String), cluster: &Id, role: NodeRole) -> Credentials {
        let key = NodeKey::generate().unwrap();
        let cert = issue(
            &keys(ca),
            &key.csr_pem().unwrap(),
            cluster,
            &Id::from("node1"),
            role,
            DEFAULT_CERT_EXPIRY_MS,
        )
        .unwrap();
        Credentials {
            ca_pem: ca.0.clone(),
            cert_pem: cert,
            key_pem: key.key_pem(),
        }
    }

    #[test]
    fn node_certificates_carry_id_role_and_cluster() {
        let cluster = Id::from("c1");
        let ca = generate_ca(&cluster).unwrap();
        let m = node(&ca, &cluster, NodeRole::Manager);
        let not_after = validity(&m.cert_pem).unwrap().not_after;
        assert_eq!(
            m.identity().unwrap(),
            CertIdentity {
                node_id: Id::from("node1"),
                role: NodeRole::Manager,
                cluster_id: cluster.clone(),
                not_after,
            }
        );
        let w = node(&ca, &cluster, NodeRole::Worker);
        assert_eq!(w.identity().unwrap().role, NodeRole::Worker);
        // Every configuration builds from them.
        m.server_config().unwrap();
        m.client_config().unwrap();
        anonymous_client_config(&ca.0).unwrap();
        assert_eq!(ca_pem_digest(&ca.0).unwrap().len(), 50);
        let (subject, key) = issuer_info(&ca.0).unwrap();
        assert!(!subject.is_empty() && !key.is_empty());
    }

    #[test]
    fn certificates_are_valid_for_the_expiry_from_now() {
        let cluster = Id::from("c1");
        let ca = generate_ca(&cluster).unwrap();
        let before = now_secs();
        let v = validity(&node(&ca, &cluster, NodeRole::Worker).cert_pem).unwrap();
        let after = now_secs();
        let expiry = i64::try_from(DEFAULT_CERT_EXPIRY_MS / 1000).unwrap();
        assert!(
            v.not_after >= before + expiry && v.not_after <= after + expiry,
            "{v:?}"
        );
        assert!(v.not_before >= before - CERT_BACKDATE_SECS && v.not_before <= after);
        assert!((before..=after).contains(&v.issued()));
        // The CA outlives them: 20 years.
        let root = validity(&ca.0).unwrap();
        assert!(root.not_after >= before + CA_EXPIRY_SECS);
        // One issued two hours ago for an hour has expired.
        let key = NodeKey::generate().unwrap();
        let old = issue_at(
            &keys(&ca),
            &key.csr_pem().unwrap(),
            (&cluster, &Id::from("n"), NodeRole::Worker),
            before - 7200,
            3_600_000,
        )
        .unwrap();
        assert!(validity(&old).unwrap().expired(before));
        // meshctl says so before it connects.
        let mut creds = node(&ca, &cluster, NodeRole::Worker);
        creds.check_not_expired(before).unwrap();
        creds.cert_pem = old;
        let e = creds.check_not_expired(before).unwrap_err();
        assert!(
            e.to_string().contains("the certificate expired 3600s ago"),
            "{e}"
        );
    }

    #[test]
    fn admin_certificates_say_admin_and_carry_their_expiry() {
        let cluster = Id::from("c1");
        let ca = generate_ca(&cluster).unwrap();
        let (cert, key) = issue_admin(&keys(&ca), &cluster, "admin-1", 7_200_000).unwrap();
        let der = mesh_api::tls::pem_to_der(&cert).unwrap();
        let CertSubject::Admin(admin) = subject(&der).unwrap() else {
            panic!("an admin certificate")
        };
        assert_eq!(admin.name, "admin-1");
        assert_eq!(admin.cluster_id, cluster);
        assert_eq!(admin.not_after, validity(&cert).unwrap().not_after);
        let creds = Credentials {
            ca_pem: ca.0.clone(),
            cert_pem: cert,
            key_pem: key,
        };
        // A client configuration builds; as a node it is nobody.
        creds.client_config().unwrap();
        let e = creds.identity().unwrap_err();
        assert!(e.to_string().contains("admin certificate"), "{e}");
    }

    #[test]
    fn a_bad_csr_is_refused() {
        let cluster = Id::from("c1");
        let ca = generate_ca(&cluster).unwrap();
        let e = issue(
            &keys(&ca),
            "garbage",
            &cluster,
            &Id::from("n"),
            NodeRole::Worker,
            DEFAULT_CERT_EXPIRY_MS,
        )
        .unwrap_err();
        assert!(e.to_string().contains("certificate signing request"), "{e}");
    }

    /// A TLS 1.3 handshake in memory between `client` and `server`: the error either side hit.
    fn handshake(
        client: std::sync::Arc<rustls::ClientConfig>,
        server: std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<(), String> {
        let mut c = rustls::ClientConnection::new(client, mesh_api::tls::manager_server_name())
            .map_err(|e| e.to_string())?;
        let mut s = rustls::ServerConnection::new(server).map_err(|e| e.to_string())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
            if !c.is_handshaking() && !s.is_handshaking() {
                // The server has seen the client's certificate only once it read its last flight.
                let mut buf = Vec::new();
                c.write_tls(&mut buf).unwrap();
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets()
                    .map_err(|e| format!("server: {e}"))?;
                return Ok(());
            }
        }
        Err("the handshake did not finish".into())
    }

    fn node_at(ca: &(String, String), role: NodeRole, issued: i64, expiry_ms: u64) -> Credentials {
        let key = NodeKey::generate().unwrap();
        let cert = issue_at(
            &keys(ca),
            &key.csr_pem().unwrap(),
            (&Id::from("c1"), &Id::from("n"), role),
            issued,
            expiry_ms,
        )
        .unwrap();
        Credentials {
            ca_pem: ca.0.clone(),
            cert_pem: cert,
            key_pem: key.key_pem(),
        }
    }

    #[test]
    fn the_handshake_refuses_expired_certificates_and_takes_renewed_ones_live() {
        use mesh_api::tls::LiveCredentials;
        let ca = generate_ca(&Id::from("c1")).unwrap();
        let now = now_secs();
        let manager = LiveCredentials::new(node(&ca, &Id::from("c1"), NodeRole::Manager)).unwrap();
        let server = manager.server_config().unwrap();
        // A worker whose hour ended a minute ago: the manager refuses it.
        let expired = node_at(&ca, NodeRole::Worker, now - 3660, 3_600_000);
        let worker = LiveCredentials::new(expired.clone()).unwrap();
        let e = handshake(worker.client_config().unwrap(), server.clone()).unwrap_err();
        assert!(e.starts_with("server:") && e.contains("xpired"), "{e}");
        let e = handshake(expired.client_config().unwrap(), server.clone()).unwrap_err();
        assert!(e.contains("xpired"), "{e}");
        // Renewed in place: the same client configuration now passes.
        let fresh = node_at(&ca, NodeRole::Worker, now, 3_600_000);
        worker.replace(fresh).unwrap();
        handshake(worker.client_config().unwrap(), server.clone()).unwrap();
        // A manager whose certificate expired is refused by its clients.
        manager
            .replace(node_at(&ca, NodeRole::Manager, now - 3660, 3_600_000))
            .unwrap();
        let e = handshake(worker.client_config().unwrap(), server).unwrap_err();
        assert!(e.starts_with("client:") && e.contains("xpired"), "{e}");
        // An unusable set is refused and the old one kept.
        let mut broken = node(&ca, &Id::from("c1"), NodeRole::Worker);
        broken.key_pem = "garbage".into();
        assert!(worker.replace(broken).is_err());
        assert_eq!(worker.current().identity().unwrap().role, NodeRole::Worker);
    }

    #[test]
    fn a_rotated_root_is_accepted_by_nodes_of_the_old_one_both_ways() {
        use mesh_api::tls::LiveCredentials;
        let cluster = Id::from("c1");
        let old = generate_ca(&cluster).unwrap();
        let (new_cert, new_key, cross) = generate_rotated_ca(&cluster, &keys(&old)).unwrap();
        let new = (new_cert, new_key);
        let both = format!("{}{}", old.0, new.0);
        let now = now_secs();
        // A node of the new root shows its certificate with the cross-signed root, and trusts both.
        let renewed = |role| {
            let mut c = node_at(&new, role, now, 3_600_000);
            c.cert_pem = format!("{}{cross}", c.cert_pem);
            c.ca_pem.clone_from(&both);
            c
        };
        let old_manager = node_at(&old, NodeRole::Manager, now, 3_600_000);
        let old_worker = node_at(&old, NodeRole::Worker, now, 3_600_000);
        let server = |c: Credentials| LiveCredentials::new(c).unwrap().server_config().unwrap();
        let client = |c: Credentials| LiveCredentials::new(c).unwrap().client_config().unwrap();
        // Renewed worker, manager of the old root only; and the other way round.
        handshake(
            client(renewed(NodeRole::Worker)),
            server(old_manager.clone()),
        )
        .unwrap();
        handshake(
            client(old_worker.clone()),
            server(renewed(NodeRole::Manager)),
        )
        .unwrap();
        handshake(
            client(renewed(NodeRole::Worker)),
            server(renewed(NodeRole::Manager)),
        )
        .unwrap();
        // Once the new root replaced the old: certificates of the new root alone, trusting it
        // alone, with nodes still in the middle of the rotation.
        let done = |role| node_at(&new, role, now, 3_600_000);
        handshake(
            client(done(NodeRole::Worker)),
            server(renewed(NodeRole::Manager)),
        )
        .unwrap();
        handshake(
            client(renewed(NodeRole::Worker)),
            server(done(NodeRole::Manager)),
        )
        .unwrap();
        // A node of the old root that never renewed and one that dropped it refuse each other.
        assert!(handshake(client(old_worker), server(done(NodeRole::Manager))).is_err());
        // Without the cross-signed root, a manager of the old root refuses a new certificate.
        let mut bare = node_at(&new, NodeRole::Worker, now, 3_600_000);
        bare.ca_pem = both;
        let e = handshake(client(bare), server(old_manager)).unwrap_err();
        assert!(e.starts_with("server:"), "{e}");
    }
}
