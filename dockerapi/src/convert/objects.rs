//! meshd's nodes, services, tasks, networks, secrets and configs as the Engine API's objects
//! (moby's `api/swagger.yaml`, definitions `Node`, `Service`, `Task`, `Network`, `Secret`,
//! `Config`).

use std::collections::BTreeMap;

use mesh_api::{BlobInfo, BlobKind, NetworkReply};
use mesh_cluster::Id;
use mesh_cluster::state::{Meta, Network, Node, NodeRole, Service, Task, UpdateState};
use serde_json::{Value, json};

use super::spec_out::{port, service_spec, task_spec};
use crate::time::rfc3339;

fn version(meta: &Meta) -> Value {
    json!({ "Index": meta.version })
}

/// Fields every object has: `ID`, `Version`, `CreatedAt`, `UpdatedAt`.
fn header(id: &Id, meta: &Meta) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("ID".into(), json!(id.as_str()));
    m.insert("Version".into(), version(meta));
    m.insert("CreatedAt".into(), json!(rfc3339(meta.created_at)));
    m.insert("UpdatedAt".into(), json!(rfc3339(meta.updated_at)));
    m
}

fn lower<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn node(n: &Node) -> Value {
    let d = &n.description;
    let mut o = header(&n.id, &n.meta);
    o.insert(
        "Spec".into(),
        json!({
            "Labels": n.spec.labels,
            "Role": lower(&n.spec.role),
            "Availability": lower(&n.spec.availability),
        }),
    );
    o.insert(
        "Description".into(),
        json!({
            "Hostname": d.hostname,
            "Platform": { "Architecture": d.arch, "OS": d.os },
            "Resources": {
                "NanoCPUs": d.resources.nano_cpus,
                "MemoryBytes": d.resources.memory_bytes,
            },
            "Engine": { "EngineVersion": d.engine_version, "Labels": d.engine_labels },
        }),
    );
    o.insert(
        "Status".into(),
        json!({
            "State": lower(&n.status.state),
            "Message": n.status.message,
            "Addr": n.status.addr.map(|a| a.to_string()).unwrap_or_default(),
        }),
    );
    if let Some(m) = &n.manager_status {
        o.insert(
            "ManagerStatus".into(),
            json!({
                "Leader": m.leader,
                "Reachability": lower(&m.reachability),
                "Addr": m.addr,
            }),
        );
    }
    Value::Object(o)
}

/// Prefix lengths of the networks, by id: a VIP or task address is written `IP/LEN`.
pub type PrefixLens = BTreeMap<Id, u8>;

pub fn prefix_lens(networks: &[Network]) -> PrefixLens {
    networks
        .iter()
        .filter_map(|n| {
            let text = n.subnet.to_string();
            let len = text.split_once('/')?.1.parse().ok()?;
            Some((n.id.clone(), len))
        })
        .collect()
}

fn cidr(addr: std::net::Ipv4Addr, network: &Id, lens: &PrefixLens) -> String {
    format!("{addr}/{}", lens.get(network).copied().unwrap_or(32))
}

fn update_state(s: UpdateState) -> &'static str {
    match s {
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

/// A service; `status` is `(running, desired)` tasks for `?status=true`.
pub fn service(s: &Service, lens: &PrefixLens, status: Option<(u64, u64)>) -> Value {
    let mut o = header(&s.id, &s.meta);
    o.insert("Spec".into(), service_spec(&s.spec));
    if let Some(p) = &s.previous_spec {
        o.insert("PreviousSpec".into(), service_spec(p));
    }
    let spec = service_spec(&s.spec);
    o.insert(
        "Endpoint".into(),
        json!({
            "Spec": spec["EndpointSpec"],
            "Ports": s.endpoint.ports.iter().map(port).collect::<Vec<_>>(),
            "VirtualIPs": s.endpoint.virtual_ips.iter()
                .map(|v| json!({
                    "NetworkID": v.network_id.as_str(),
                    "Addr": cidr(v.addr, &v.network_id, lens),
                }))
                .collect::<Vec<_>>(),
        }),
    );
    if let Some(u) = &s.update_status {
        let mut status = json!({
            "State": update_state(u.state),
            "StartedAt": rfc3339(u.started_at),
            "Message": u.message,
        });
        if let Some(done) = u.completed_at {
            status["CompletedAt"] = json!(rfc3339(done));
        }
        o.insert("UpdateStatus".into(), status);
    }
    if let Some((running, desired)) = status {
        o.insert(
            "ServiceStatus".into(),
            json!({ "RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": 0 }),
        );
    }
    Value::Object(o)
}

/// `3/5` (as `service ls` shows REPLICAS, possibly with a suffix) as (running, desired).
pub fn replicas_count(replicas: &str) -> Option<(u64, u64)> {
    let (running, rest) = replicas.split_once('/')?;
    let desired: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((running.trim().parse().ok()?, desired.parse().ok()?))
}

pub fn task(t: &Task, lens: &PrefixLens) -> Value {
    let mut o = header(&t.id, &t.meta);
    o.insert("Labels".into(), json!({}));
    o.insert("Spec".into(), task_spec(&t.spec));
    o.insert("ServiceID".into(), json!(t.service_id.as_str()));
    o.insert("Slot".into(), json!(t.slot));
    if let Some(n) = &t.node_id {
        o.insert("NodeID".into(), json!(n.as_str()));
    }
    let st = &t.status;
    let mut status = json!({
        "Timestamp": rfc3339(st.timestamp),
        "State": st.state.as_str(),
        "Message": st.message,
        "PortStatus": {},
    });
    if !st.err.is_empty() {
        status["Err"] = json!(st.err);
    }
    if !st.container_id.is_empty() {
        status["ContainerStatus"] = json!({
            "ContainerID": st.container_id,
            "PID": st.pid,
            "ExitCode": st.exit_code.unwrap_or(0),
        });
    }
    o.insert("Status".into(), status);
    o.insert("DesiredState".into(), json!(t.desired_state.as_str()));
    o.insert(
        "NetworksAttachments".into(),
        json!(
            t.networks
                .iter()
                .map(|n| json!({
                    "Network": { "ID": n.network_id.as_str() },
                    "Addresses": [cidr(n.addr, &n.network_id, lens)],
                }))
                .collect::<Vec<_>>()
        ),
    );
    Value::Object(o)
}

/// A swarm network as `GET /networks` shows it (moby's `NetworkResource`).
pub fn network(n: &Network, gateway: Option<std::net::Ipv4Addr>) -> Value {
    let mut config = json!({ "Subnet": n.subnet.to_string() });
    if let Some(g) = gateway {
        config["Gateway"] = json!(g.to_string());
    }
    let mut options = n.spec.options.clone();
    options.insert(
        "com.docker.network.driver.overlay.vxlanid_list".into(),
        n.vni.to_string(),
    );
    json!({
        "Name": n.spec.name,
        "Id": n.id.as_str(),
        "Created": rfc3339(n.meta.created_at),
        "Scope": "swarm",
        "Driver": if n.spec.driver.is_empty() { "overlay" } else { &n.spec.driver },
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [config] },
        "Internal": false,
        "Attachable": n.spec.attachable,
        "Ingress": n.spec.ingress,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": null,
        "Options": options,
        "Labels": n.spec.labels,
    })
}

pub fn network_reply(r: &NetworkReply) -> Value {
    network(&r.network, r.gateway)
}

/// A secret or config; a secret's data never leaves the manager (as moby's), a config's does.
pub fn blob(kind: BlobKind, b: &BlobInfo) -> Value {
    let mut o = header(&b.id, &b.meta);
    let mut spec = json!({ "Name": b.name, "Labels": b.labels });
    if kind == BlobKind::Config
        && let Some(data) = &b.data
    {
        use base64::Engine as _;
        spec["Data"] = json!(base64::engine::general_purpose::STANDARD.encode(&data.0));
    }
    o.insert("Spec".into(), spec);
    Value::Object(o)
}

/// The `Swarm` block of `GET /info` (moby's `SwarmInfo`).
pub struct SwarmInfo<'a> {
    pub info: &'a mesh_api::Info,
    /// Managers only: every node.
    pub nodes: Option<&'a [Node]>,
}

pub fn swarm_info(s: &SwarmInfo) -> Value {
    let info = s.info;
    let Some(node_id) = &info.node_id else {
        return json!({
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null,
        });
    };
    let is_manager = info.role == Some(NodeRole::Manager);
    let mut v = json!({
        "NodeID": node_id.as_str(),
        "NodeAddr": info.node_addr.map(|a| a.to_string()).unwrap_or_default(),
        // An autolocked manager that restarted: docker's `locked`.
        "LocalNodeState": if info.locked { "locked" } else { "active" },
        "ControlAvailable": is_manager && !info.locked,
        "Error": "",
    });
    match s.nodes {
        Some(nodes) => {
            let managers: Vec<Value> = nodes
                .iter()
                .filter_map(|n| {
                    let m = n.manager_status.as_ref()?;
                    Some(json!({ "NodeID": n.id.as_str(), "Addr": m.addr }))
                })
                .collect();
            v["Managers"] = json!(managers.len());
            v["Nodes"] = json!(nodes.len());
            v["RemoteManagers"] = json!(managers);
        }
        None => {
            v["RemoteManagers"] = json!(
                info.managers
                    .iter()
                    .map(|a| json!({ "NodeID": "", "Addr": a }))
                    .collect::<Vec<_>>()
            );
        }
    }
    if is_manager && let Some(cluster) = &info.cluster_id {
        v["Cluster"] = cluster_object(cluster);
    }
    v
}

/// The cluster as `GET /swarm` and `/info` show it: meshd's fixed settings in moby's spec.
pub fn cluster_object(cluster: &Id) -> Value {
    json!({
        "ID": cluster.as_str(),
        "Version": { "Index": 0 },
        "CreatedAt": rfc3339(0),
        "UpdatedAt": rfc3339(0),
        "Spec": {
            "Name": "default",
            "Labels": {},
            "Orchestration": { "TaskHistoryRetentionLimit": 5 },
            "Raft": {
                "SnapshotInterval": 10000,
                "KeepOldSnapshots": 0,
                "LogEntriesForSlowFollowers": 500,
                "ElectionTick": 10,
                "HeartbeatTick": 1,
            },
            "Dispatcher": { "HeartbeatPeriod": 5_000_000_000_u64 },
            "CAConfig": { "NodeCertExpiry": 7_776_000_000_000_000_u64 },
            "TaskDefaults": {},
            "EncryptionConfig": { "AutoLockManagers": false },
        },
        "TLSInfo": {},
        "RootRotationInProgress": false,
        "DataPathPort": 4789,
        "DefaultAddrPool": ["10.0.0.0/8"],
        "SubnetSize": 24,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_cluster::state::{ManagerStatus, NodeSpec, NodeState, NodeStatus, Reachability};

    fn manager() -> Node {
        Node {
            id: Id::from("n1"),
            meta: Meta {
                version: 7,
                created_at: 1,
                updated_at: 2,
            },
            spec: NodeSpec::default(),
            description: mesh_cluster::state::NodeDescription {
                hostname: "node1".into(),
                engine_version: "20.10.24".into(),
                ..Default::default()
            },
            status: NodeStatus {
                state: NodeState::Ready,
                message: String::new(),
                addr: Some("198.18.0.11".parse().unwrap()),
            },
            manager_status: Some(ManagerStatus {
                raft_id: 1,
                addr: "198.18.0.11:2377".into(),
                reachability: Reachability::Reachable,
                leader: true,
            }),
            attachments: BTreeMap::new(),
        }
    }

    #[test]
    fn a_node_has_the_fields_docker_node_ls_reads() {
        // swagger `Node`: ID, Version.Index, Spec.Role/Availability, Description.Hostname and
        // Engine.EngineVersion, Status.State/Addr, ManagerStatus.Leader/Reachability/Addr.
        let v = node(&manager());
        assert_eq!(v["ID"], "n1");
        assert_eq!(v["Version"]["Index"], 7);
        assert_eq!(v["Spec"]["Role"], "worker");
        assert_eq!(v["Spec"]["Availability"], "active");
        assert_eq!(v["Description"]["Hostname"], "node1");
        assert_eq!(v["Description"]["Engine"]["EngineVersion"], "20.10.24");
        assert_eq!(v["Status"]["State"], "ready");
        assert_eq!(v["Status"]["Addr"], "198.18.0.11");
        assert_eq!(v["ManagerStatus"]["Leader"], true);
        assert_eq!(v["ManagerStatus"]["Reachability"], "reachable");
        assert_eq!(v["CreatedAt"], "1970-01-01T00:00:00.001000000Z");
    }

    #[test]
    fn the_swarm_block_says_what_the_node_is() {
        // swagger `SwarmInfo`.
        let nodes = [manager()];
        let info = mesh_api::Info {
            node_id: Some(Id::from("n1")),
            cluster_id: Some(Id::from("c1")),
            role: Some(NodeRole::Manager),
            node_addr: Some("198.18.0.11".parse().unwrap()),
            managers: vec!["198.18.0.11:2377".into()],
            ..Default::default()
        };
        let v = swarm_info(&SwarmInfo {
            info: &info,
            nodes: Some(&nodes),
        });
        assert_eq!(v["LocalNodeState"], "active");
        assert_eq!(v["ControlAvailable"], true);
        assert_eq!(
            (v["Managers"].as_u64(), v["Nodes"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["RemoteManagers"][0]["Addr"], "198.18.0.11:2377");
        assert_eq!(v["Cluster"]["ID"], "c1");
        let worker = mesh_api::Info {
            role: Some(NodeRole::Worker),
            ..info
        };
        let v = swarm_info(&SwarmInfo {
            info: &worker,
            nodes: None,
        });
        assert_eq!(v["ControlAvailable"], false);
        assert!(v.get("Cluster").is_none() && v.get("Nodes").is_none());
        let v = swarm_info(&SwarmInfo {
            info: &mesh_api::Info::default(),
            nodes: None,
        });
        assert_eq!(v["LocalNodeState"], "inactive");
    }

    #[test]
    fn replicas_become_the_service_status() {
        assert_eq!(replicas_count("3/3"), Some((3, 3)));
        assert_eq!(replicas_count("1/2 (max 1 per node)"), Some((1, 2)));
        assert_eq!(replicas_count("global"), None);
    }
}
