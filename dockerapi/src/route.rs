//! Which endpoint a request is for: the swarm calls meshd answers, the ones it refuses (501),
//! and everything else, which goes to the node's engine.

use mesh_api::BlobKind;

/// A request's endpoint, from its method and path (`/v1.41/...` or unversioned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Version,
    Info,
    SwarmInspect,
    /// `GET /swarm/unlockkey` (`docker swarm unlock-key`).
    SwarmUnlockKey,
    /// `POST /swarm/unlock` (`docker swarm unlock`).
    SwarmUnlock,
    NodeList,
    NodeInspect(String),
    NodeUpdate(String),
    NodeDelete(String),
    ServiceList,
    ServiceCreate,
    ServiceInspect(String),
    ServiceUpdate(String),
    ServiceDelete(String),
    ServiceLogs(String),
    TaskList,
    TaskInspect(String),
    TaskLogs(String),
    /// Overlay networks are the swarm's, other drivers the engine's: the handler decides.
    NetworkList,
    NetworkCreate,
    NetworkInspect(String),
    NetworkDelete(String),
    BlobList(BlobKind),
    BlobCreate(BlobKind),
    BlobInspect(BlobKind, String),
    BlobDelete(BlobKind, String),
    /// Swarm events are meshd's, the others the engine's: the handler decides.
    Events,
    /// A swarm call meshd does not serve: 501 naming it.
    NotServed,
    /// Everything else: the node's engine answers.
    Engine,
}

/// The path without its `/vX.Y` prefix.
pub fn unversioned(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(slash) = rest.find('/')
    {
        let version = &rest[..slash];
        let is_version = version.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if is_version {
            return &rest[slash..];
        }
    }
    path
}

/// The endpoint of `method path`.
pub fn endpoint(method: &str, path: &str) -> Endpoint {
    let path = unversioned(path);
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let m = method;
    match parts.as_slice() {
        ["_ping"] if m == "GET" || m == "HEAD" => Endpoint::Ping,
        ["version"] if m == "GET" => Endpoint::Version,
        ["info"] if m == "GET" => Endpoint::Info,
        ["events"] if m == "GET" => Endpoint::Events,
        ["swarm"] if m == "GET" => Endpoint::SwarmInspect,
        ["swarm", "unlockkey"] if m == "GET" => Endpoint::SwarmUnlockKey,
        ["swarm", "unlock"] if m == "POST" => Endpoint::SwarmUnlock,
        ["nodes"] if m == "GET" => Endpoint::NodeList,
        ["nodes", id] if m == "GET" => Endpoint::NodeInspect((*id).to_owned()),
        ["nodes", id] if m == "DELETE" => Endpoint::NodeDelete((*id).to_owned()),
        ["nodes", id, "update"] if m == "POST" => Endpoint::NodeUpdate((*id).to_owned()),
        ["services"] if m == "GET" => Endpoint::ServiceList,
        ["services", "create"] if m == "POST" => Endpoint::ServiceCreate,
        ["services", id] if m == "GET" => Endpoint::ServiceInspect((*id).to_owned()),
        ["services", id] if m == "DELETE" => Endpoint::ServiceDelete((*id).to_owned()),
        ["services", id, "update"] if m == "POST" => Endpoint::ServiceUpdate((*id).to_owned()),
        ["services", id, "logs"] if m == "GET" => Endpoint::ServiceLogs((*id).to_owned()),
        ["tasks"] if m == "GET" => Endpoint::TaskList,
        ["tasks", id] if m == "GET" => Endpoint::TaskInspect((*id).to_owned()),
        ["tasks", id, "logs"] if m == "GET" => Endpoint::TaskLogs((*id).to_owned()),
        ["networks"] if m == "GET" => Endpoint::NetworkList,
        ["networks", "create"] if m == "POST" => Endpoint::NetworkCreate,
        ["networks", id] if m == "GET" => Endpoint::NetworkInspect((*id).to_owned()),
        ["networks", id] if m == "DELETE" => Endpoint::NetworkDelete((*id).to_owned()),
        [kind @ ("secrets" | "configs"), rest @ ..] => blob_endpoint(m, kind, rest),
        // The rest of the swarm's paths: refused, never passed to an engine.
        ["swarm" | "nodes" | "services" | "tasks", ..] => Endpoint::NotServed,
        _ => Endpoint::Engine,
    }
}

fn blob_endpoint(method: &str, kind: &str, rest: &[&str]) -> Endpoint {
    let kind = if kind == "secrets" {
        BlobKind::Secret
    } else {
        BlobKind::Config
    };
    match (method, rest) {
        ("GET", []) => Endpoint::BlobList(kind),
        ("POST", ["create"]) => Endpoint::BlobCreate(kind),
        ("GET", [id]) => Endpoint::BlobInspect(kind, (*id).to_owned()),
        ("DELETE", [id]) => Endpoint::BlobDelete(kind, (*id).to_owned()),
        _ => Endpoint::NotServed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_and_unversioned_paths_are_the_same_endpoint() {
        for p in ["/nodes", "/v1.41/nodes", "/v1.24/nodes/"] {
            assert_eq!(endpoint("GET", p), Endpoint::NodeList, "{p}");
        }
        assert_eq!(unversioned("/v1.41/_ping"), "/_ping");
        assert_eq!(unversioned("/volumes"), "/volumes");
        assert_eq!(unversioned("/vx/ping"), "/vx/ping");
    }

    #[test]
    fn swarm_calls_are_served_or_refused_and_the_rest_goes_to_the_engine() {
        assert_eq!(endpoint("HEAD", "/_ping"), Endpoint::Ping);
        assert_eq!(
            endpoint("POST", "/v1.41/services/abc/update"),
            Endpoint::ServiceUpdate("abc".into())
        );
        assert_eq!(
            endpoint("GET", "/v1.41/services/web/logs"),
            Endpoint::ServiceLogs("web".into())
        );
        assert_eq!(
            endpoint("GET", "/v1.41/swarm/unlockkey"),
            Endpoint::SwarmUnlockKey
        );
        assert_eq!(endpoint("POST", "/swarm/unlock"), Endpoint::SwarmUnlock);
        assert_eq!(
            endpoint("POST", "/secrets/create"),
            Endpoint::BlobCreate(BlobKind::Secret)
        );
        assert_eq!(
            endpoint("DELETE", "/configs/c1"),
            Endpoint::BlobDelete(BlobKind::Config, "c1".into())
        );
        // Swarm calls outside the subset are refused, never passed to an engine.
        for (m, p) in [
            ("POST", "/swarm/init"),
            ("POST", "/swarm/leave"),
            ("POST", "/secrets/s1/update"),
            ("POST", "/tasks/t1/logs"),
        ] {
            assert_eq!(endpoint(m, p), Endpoint::NotServed, "{m} {p}");
        }
        for (m, p) in [
            ("GET", "/v1.41/containers/json"),
            ("POST", "/v1.41/exec/abc/start"),
            ("POST", "/events"),
            ("GET", "/distribution/img/json"),
            ("POST", "/networks/n1/connect"),
        ] {
            assert_eq!(endpoint(m, p), Endpoint::Engine, "{m} {p}");
        }
    }
}
