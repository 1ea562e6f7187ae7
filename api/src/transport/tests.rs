//! 2377's limits for peers without a certificate, on a real listener.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SanType,
};

use super::*;
use crate::JoinClusterRequest;
use crate::tls::{Credentials, MANAGER_NAME, anonymous_client_config, manager_server_name};

/// A CA and a manager certificate signed by it.
fn manager_credentials() -> Credentials {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.clone().self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "m1");
    dn.push(DnType::OrganizationalUnitName, MANAGER_NAME);
    dn.push(DnType::OrganizationName, "c");
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::DnsName(MANAGER_NAME.try_into().unwrap())];
    let issuer = Issuer::new(ca, ca_key);
    Credentials {
        ca_pem,
        cert_pem: p.signed_by(&key, &issuer).unwrap().pem(),
        key_pem: key.serialize_pem(),
    }
}

struct Answer;

impl Handler for Answer {
    async fn call(&self, _peer: Peer, _req: Request) -> Result<Reply, ApiError> {
        Ok(Reply::Left)
    }

    async fn session(
        &self,
        _peer: Peer,
        _inbound: Pin<Box<dyn Stream<Item = Result<AgentMessage, ApiError>> + Send>>,
        _outbound: mpsc::Sender<ManagerMessage>,
    ) {
    }
}

fn join(csr_len: usize) -> Request {
    Request::JoinCluster(JoinClusterRequest {
        secret: String::new(),
        csr_pem: "x".repeat(csr_len),
        description: mesh_cluster::state::NodeDescription::default(),
        advertise_addr: std::net::Ipv4Addr::LOCALHOST,
        listen_port: 2377,
    })
}

#[tokio::test]
async fn anonymous_peers_get_small_frames_and_few_connections() {
    let creds = manager_credentials();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        creds.server_config().unwrap(),
        Arc::new(Answer),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let tls = anonymous_client_config(&creds.ca_pem).unwrap();
    let client = Client::tls(&addr, tls.clone());
    // A join-sized frame passes; a frame past the anonymous limit does not.
    assert!(matches!(client.call(&join(4096)).await, Ok(Reply::Left)));
    let err = client
        .call(&join(MAX_ANONYMOUS_MESSAGE + 1))
        .await
        .unwrap_err();
    assert!(err.message.contains("too large"), "{err}");
    drop(client);

    // Hold every anonymous slot with idle TLS connections: the next one is closed.
    let mut held = Vec::new();
    for _ in 0..MAX_ANONYMOUS_CONNECTIONS {
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(manager_server_name(), tcp)
            .await
            .unwrap();
        held.push(tls);
    }
    // Give the server a moment to count them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = Client::tls(&addr, tls.clone())
        .call_with_timeout(&Request::Info, Duration::from_secs(3))
        .await;
    assert!(refused.is_err(), "a connection past the cap was served");
    // Once they close, anonymous peers are served again.
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = Client::tls(&addr, tls.clone());
        if c.call_with_timeout(&Request::Info, Duration::from_secs(2))
            .await
            .is_ok()
        {
            served = true;
            break;
        }
    }
    assert!(
        served,
        "anonymous peers not served after the slots were freed"
    );
    let _ = stop_tx.send(());
    server.abort();
}

/// A connection that cannot be made says the request was not delivered (safe to send again);
/// an answer that never comes does not.
#[tokio::test]
async fn undelivered_requests_are_told_apart() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let tls = anonymous_client_config(&manager_credentials().ca_pem).unwrap();
    let e = Client::tls(&addr, tls)
        .call(&Request::Info)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unreachable, "{e}");
    assert!(e.not_delivered() && e.is_retryable());

    let dir = tempfile::tempdir().unwrap();
    let e = Client::local(&dir.path().join("none.sock"))
        .call(&Request::Info)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unreachable, "{e}");

    // A listener that takes the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let tls = anonymous_client_config(&manager_credentials().ca_pem).unwrap();
    let e = Client::tls(&addr, tls)
        .call_with_timeout(&Request::Info, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unavailable, "{e}");
    assert!(!e.not_delivered());
}
