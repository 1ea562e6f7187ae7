//! The swarm calls answered through meshd's cluster API: swarm, nodes, services, tasks,
//! secrets and configs. Each checks that this node is a manager first (moby's 503 otherwise).

use base64::Engine as _;
use hyper::Response;
use mesh_api::{
    BlobCreate, BlobData, BlobKind, ImageOptions, NodeReply, Reply, Request, ServiceTasksReply,
};
use mesh_cluster::state::{NodeRole, RegistryAuth, Service, ServiceMode};
use serde_json::{Value, json};

use crate::convert::filters::{Filters, label_matches};
use crate::convert::node_update::node_update;
use crate::convert::objects::{self, PrefixLens, prefix_lens};
use crate::convert::spec_in::service_spec;
use crate::error::HttpError;
use crate::front::{Call, Front, empty_response, json_response, unexpected};
use crate::proxy::Body;
use crate::route::Endpoint;

type Answer = Result<Response<Body>, HttpError>;

impl Front {
    pub(crate) async fn cluster_call(&self, ep: Endpoint, call: &Call) -> Answer {
        let info = self.manager_info().await?;
        match ep {
            Endpoint::SwarmInspect => self.swarm_inspect(&info).await,
            Endpoint::SwarmUnlockKey => {
                match self.call(Request::UnlockKey { rotate: false }).await? {
                    (Reply::UnlockKey(k), _) => Ok(json_response(
                        200,
                        &json!({"UnlockKey": k.key.unwrap_or_default()}),
                    )),
                    (other, _) => Err(unexpected(&other)),
                }
            }
            Endpoint::SwarmUnlock => {
                let key = serde_json::from_slice::<Value>(&call.body)
                    .ok()
                    .and_then(|v| v["UnlockKey"].as_str().map(str::to_owned))
                    .ok_or_else(|| {
                        HttpError::bad_request("the body must be {\"UnlockKey\": \"SWMKEY-1-...\"}")
                    })?;
                self.call(Request::Unlock(mesh_api::UnlockRequest { key }))
                    .await?;
                Ok(empty_response(200))
            }
            Endpoint::NodeList => self.node_list(call).await,
            Endpoint::NodeInspect(id) => {
                let n = self.node(&id).await?;
                Ok(json_response(200, &objects::node(&n.node)))
            }
            Endpoint::NodeUpdate(id) => self.node_update(&id, call).await,
            Endpoint::NodeDelete(node) => {
                let force = call.flag("force");
                self.call(Request::NodeRemove { node, force }).await?;
                Ok(empty_response(200))
            }
            Endpoint::ServiceList => self.service_list(call).await,
            Endpoint::ServiceCreate => self.service_create(call).await,
            Endpoint::ServiceInspect(service) => {
                let s = self.service(&service).await?;
                let lens = self.prefix_lens().await?;
                Ok(json_response(200, &objects::service(&s, &lens, None)))
            }
            Endpoint::ServiceUpdate(service) => self.service_update(&service, call).await,
            Endpoint::ServiceDelete(service) => {
                self.call(Request::ServiceRemove { service }).await?;
                Ok(empty_response(200))
            }
            Endpoint::ServiceLogs(service) => {
                let tasks = match self
                    .call(Request::ServiceTasks {
                        services: vec![service.clone()],
                    })
                    .await?
                {
                    (Reply::ServiceTasks(t), _) => t,
                    (other, _) => return Err(unexpected(&other)),
                };
                self.logs(&service, tasks, call).await
            }
            Endpoint::TaskLogs(task) => {
                let tasks = self.all_tasks().await?;
                self.logs(&task, tasks, call).await
            }
            Endpoint::TaskList => self.task_list(call).await,
            Endpoint::TaskInspect(id) => self.task_inspect(&id).await,
            Endpoint::BlobList(kind) => self.blob_list(kind, call).await,
            Endpoint::BlobCreate(kind) => self.blob_create(kind, call).await,
            Endpoint::BlobInspect(kind, name) => {
                match self.call(Request::BlobInspect { kind, name }).await? {
                    (Reply::Blob(b), _) => Ok(json_response(200, &objects::blob(kind, &b))),
                    (other, _) => Err(unexpected(&other)),
                }
            }
            Endpoint::BlobDelete(kind, name) => {
                self.call(Request::BlobRemove { kind, name }).await?;
                Ok(empty_response(204))
            }
            _ => Err(HttpError::not_implemented(&call.method, &call.path)),
        }
    }

    async fn swarm_inspect(&self, info: &mesh_api::Info) -> Answer {
        let Some(cluster) = &info.cluster_id else {
            return Err(HttpError::not_in_swarm());
        };
        let mut v = objects::cluster_object(cluster);
        for (role, key) in [(NodeRole::Worker, "Worker"), (NodeRole::Manager, "Manager")] {
            match self
                .call(Request::JoinToken {
                    role,
                    rotate: false,
                })
                .await?
            {
                (Reply::JoinToken(t), _) => v["JoinTokens"][key] = json!(t.token),
                (other, _) => return Err(unexpected(&other)),
            }
        }
        Ok(json_response(200, &v))
    }

    async fn node(&self, node: &str) -> Result<NodeReply, HttpError> {
        match self
            .call(Request::NodeInspect {
                node: node.to_owned(),
            })
            .await?
        {
            (Reply::Node(n), _) => Ok(*n),
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn node_list(&self, call: &Call) -> Answer {
        let filters = Filters::parse(
            call.param("filters"),
            &[
                "id",
                "label",
                "node.label",
                "membership",
                "name",
                "node.name",
                "role",
            ],
        )?;
        let nodes = match self.call(Request::NodeList).await? {
            (Reply::Nodes(n), _) => n.nodes,
            (other, _) => return Err(unexpected(&other)),
        };
        let list: Vec<Value> = nodes
            .iter()
            .filter(|n| {
                filters.pass("id", |v| n.id.matches_prefix(v))
                    && filters.pass("name", |v| n.description.hostname.starts_with(v))
                    && filters.pass("node.name", |v| n.description.hostname.starts_with(v))
                    && filters.pass("role", |v| objects_role(n.spec.role) == v)
                    && filters.pass("membership", |v| v == "accepted")
                    && filters.pass("label", |v| label_matches(&n.description.engine_labels, v))
                    && filters.pass("node.label", |v| label_matches(&n.spec.labels, v))
            })
            .map(objects::node)
            .collect();
        Ok(json_response(200, &json!(list)))
    }

    async fn node_update(&self, node: &str, call: &Call) -> Answer {
        let version = call.version()?;
        let current = self.node(node).await?.node;
        if current.meta.version != version {
            return Err(out_of_sequence());
        }
        let update = node_update(&current, &call.body)?;
        self.call(Request::NodeUpdate(update)).await?;
        Ok(empty_response(200))
    }

    async fn service(&self, service: &str) -> Result<Service, HttpError> {
        match self
            .call(Request::ServiceInspect {
                service: service.to_owned(),
            })
            .await?
        {
            (Reply::Service(s), _) => Ok(*s),
            (other, _) => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn prefix_lens(&self) -> Result<PrefixLens, HttpError> {
        match self.call(Request::NetworkList).await? {
            (Reply::Networks(n), _) => Ok(prefix_lens(&n)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn service_list(&self, call: &Call) -> Answer {
        let filters = Filters::parse(call.param("filters"), &["id", "label", "mode", "name"])?;
        let summaries = match self.call(Request::ServiceList).await? {
            (Reply::Services(s), _) => s,
            (other, _) => return Err(unexpected(&other)),
        };
        let lens = self.prefix_lens().await?;
        let with_status = call.flag("status");
        let list: Vec<Value> = summaries
            .iter()
            .filter(|s| {
                let svc = &s.service;
                filters.pass("id", |v| svc.id.matches_prefix(v))
                    && filters.pass("name", |v| svc.spec.name.starts_with(v))
                    && filters.pass("label", |v| label_matches(&svc.spec.labels, v))
                    && filters.pass("mode", |v| match svc.spec.mode {
                        ServiceMode::Global => v == "global",
                        ServiceMode::Replicated { .. } => v == "replicated",
                    })
            })
            .map(|s| {
                let status = with_status
                    .then(|| objects::replicas_count(&s.replicas))
                    .flatten();
                objects::service(&s.service, &lens, status)
            })
            .collect();
        Ok(json_response(200, &json!(list)))
    }

    async fn service_create(&self, call: &Call) -> Answer {
        let spec = service_spec(&call.body)?;
        let image = ImageOptions {
            // The docker CLI pins the digest itself (`/distribution`, passed to the engine).
            resolve: false,
            registry_auth: registry_auth(call)?,
        };
        match self.call(Request::ServiceCreate { spec, image }).await? {
            (Reply::ServiceCreated { id }, warnings) => Ok(json_response(
                201,
                &json!({ "ID": id.as_str(), "Warnings": warnings_json(&warnings) }),
            )),
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn service_update(&self, service: &str, call: &Call) -> Answer {
        let version = call.version()?;
        let (_, warnings) = if call.param("rollback") == Some("previous") {
            self.call(Request::ServiceRollback {
                service: service.to_owned(),
            })
            .await?
        } else {
            let spec = service_spec(&call.body)?;
            // `registryAuthFrom=previous-spec|spec` without a header: keep what the service has.
            let image = ImageOptions {
                resolve: false,
                registry_auth: registry_auth(call)?,
            };
            self.call(Request::ServiceUpdate {
                service: service.to_owned(),
                version,
                spec,
                image,
            })
            .await?
        };
        Ok(json_response(
            200,
            &json!({ "Warnings": warnings_json(&warnings) }),
        ))
    }

    pub(crate) async fn all_tasks(&self) -> Result<ServiceTasksReply, HttpError> {
        let services = match self.call(Request::ServiceList).await? {
            (Reply::Services(s), _) => s,
            (other, _) => return Err(unexpected(&other)),
        };
        let ids = services.iter().map(|s| s.service.id.to_string()).collect();
        match self.call(Request::ServiceTasks { services: ids }).await? {
            (Reply::ServiceTasks(t), _) => Ok(t),
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn task_list(&self, call: &Call) -> Answer {
        let filters = Filters::parse(
            call.param("filters"),
            &[
                "id",
                "label",
                "name",
                "node",
                "service",
                "desired-state",
                "_up-to-date",
            ],
        )?;
        let all = self.all_tasks().await?;
        let lens = self.prefix_lens().await?;
        let service_of = |id: &mesh_cluster::Id| all.services.iter().find(|s| &s.id == id);
        let list: Vec<Value> = all
            .tasks
            .iter()
            .filter(|t| {
                let service = service_of(&t.service_id);
                let name = service.map(|s| format!("{}.{}", s.spec.name, t.slot));
                let node = t
                    .node_id
                    .as_ref()
                    .and_then(|n| all.nodes.iter().find(|x| &x.id == n));
                filters.pass("id", |v| t.id.matches_prefix(v))
                    && filters.pass("name", |v| name.as_deref().is_some_and(|n| n.starts_with(v)))
                    && filters.pass("service", |v| {
                        t.service_id.matches_prefix(v) || service.is_some_and(|s| s.spec.name == v)
                    })
                    && filters.pass("node", |v| {
                        node.is_some_and(|n| n.id.matches_prefix(v) || n.description.hostname == v)
                    })
                    && filters.pass("desired-state", |v| t.desired_state.as_str() == v)
                    && filters.pass("label", |v| label_matches(&t.spec.container.labels, v))
                    // The progress display's filter (swarmkit's "not dirty"): the task runs the
                    // service's current task spec.
                    && filters.pass("_up-to-date", |v| {
                        let current = service.is_some_and(|s| s.spec.task == t.spec);
                        (v == "true" || v == "1") == current
                    })
            })
            .map(|t| objects::task(t, &lens))
            .collect();
        Ok(json_response(200, &json!(list)))
    }

    async fn task_inspect(&self, id: &str) -> Answer {
        let all = self.all_tasks().await?;
        let lens = self.prefix_lens().await?;
        let found: Vec<_> = all
            .tasks
            .iter()
            .filter(|t| t.id.matches_prefix(id))
            .collect();
        match found.as_slice() {
            [t] => Ok(json_response(200, &objects::task(t, &lens))),
            [] => Err(HttpError::not_found(format!("No such task: {id}"))),
            _ => Err(HttpError::bad_request(format!(
                "task {id} is ambiguous ({} matches): give more of its id",
                found.len()
            ))),
        }
    }

    async fn blob_list(&self, kind: BlobKind, call: &Call) -> Answer {
        let filters = Filters::parse(call.param("filters"), &["id", "label", "name", "names"])?;
        let blobs = match self.call(Request::BlobList { kind }).await? {
            (Reply::Blobs(b), _) => b,
            (other, _) => return Err(unexpected(&other)),
        };
        let list: Vec<Value> = blobs
            .iter()
            .filter(|b| {
                filters.pass("id", |v| b.id.matches_prefix(v))
                    && filters.pass("name", |v| b.name.starts_with(v))
                    && filters.pass("names", |v| b.name == v)
                    && filters.pass("label", |v| label_matches(&b.labels, v))
            })
            .map(|b| objects::blob(kind, b))
            .collect();
        Ok(json_response(200, &json!(list)))
    }

    async fn blob_create(&self, kind: BlobKind, call: &Call) -> Answer {
        let create = blob_create(kind, &call.body)?;
        match self.call(Request::BlobCreate(create)).await? {
            (Reply::BlobCreated { id }, _) => Ok(json_response(201, &json!({ "ID": id.as_str() }))),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

fn objects_role(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

/// moby's answer to an update at a version that is no longer the object's.
fn out_of_sequence() -> HttpError {
    HttpError::new(
        409,
        "update out of sequence: the object changed since it was read; read it again and retry",
    )
}

fn warnings_json(warnings: &[String]) -> Value {
    if warnings.is_empty() {
        Value::Null
    } else {
        json!(warnings)
    }
}

/// The `X-Registry-Auth` header (base64url JSON of docker's `AuthConfig`), when it carries a
/// login.
fn registry_auth(call: &Call) -> Result<Option<RegistryAuth>, HttpError> {
    let Some(header) = call.headers.get("X-Registry-Auth") else {
        return Ok(None);
    };
    parse_registry_auth(header.as_bytes())
}

pub fn parse_registry_auth(header: &[u8]) -> Result<Option<RegistryAuth>, HttpError> {
    let text = std::str::from_utf8(header).unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || {
        HttpError::bad_request(
            "invalid X-Registry-Auth header: expected base64url-encoded JSON of an AuthConfig",
        )
    };
    let json = base64::engine::general_purpose::URL_SAFE
        .decode(text)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
        })
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&json).map_err(|_| bad())?;
    let field = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    if field("username").is_empty() && field("password").is_empty() {
        return Ok(None);
    }
    Ok(Some(RegistryAuth {
        server: field("serveraddress"),
        username: field("username"),
        password: field("password"),
    }))
}

/// A `POST /secrets/create` or `/configs/create` body (swagger `SecretSpec`, `ConfigSpec`).
pub fn blob_create(kind: BlobKind, body: &[u8]) -> Result<BlobCreate, HttpError> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("invalid {} spec: {e}", kind.as_str())))?;
    let name = v
        .remove("Name")
        .and_then(|n| n.as_str().map(str::to_owned))
        .unwrap_or_default();
    let labels = match v.remove("Labels") {
        None | Some(Value::Null) => std::collections::BTreeMap::default(),
        Some(l) => serde_json::from_value(l)
            .map_err(|e| HttpError::bad_request(format!("invalid Labels: {e}")))?,
    };
    let data = v
        .remove("Data")
        .and_then(|d| d.as_str().map(str::to_owned))
        .unwrap_or_default();
    let data = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|e| HttpError::bad_request(format!("invalid Data: expected base64 ({e})")))?;
    let what = if kind == BlobKind::Secret {
        "SecretSpec"
    } else {
        "ConfigSpec"
    };
    crate::convert::unsupported::refuse_unsupported(what, &v)?;
    Ok(BlobCreate {
        kind,
        name,
        labels,
        data: BlobData(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_is_read_from_the_header_docker_sends() {
        // docker's `registry.EncodeAuthConfig`: base64url of the AuthConfig JSON.
        let json = br#"{"username":"alice","password":"pw","serveraddress":"198.18.0.5:5000"}"#;
        let header = base64::engine::general_purpose::URL_SAFE.encode(json);
        let auth = parse_registry_auth(header.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (auth.server.as_str(), auth.username.as_str()),
            ("198.18.0.5:5000", "alice")
        );
        // An empty AuthConfig ({}) is no login.
        let empty = base64::engine::general_purpose::URL_SAFE.encode(b"{}");
        assert!(parse_registry_auth(empty.as_bytes()).unwrap().is_none());
        assert_eq!(parse_registry_auth(b"!!!").unwrap_err().status, 400);
    }

    #[test]
    fn a_secret_spec_becomes_a_blob_create() {
        // swagger `SecretSpec` example, as `docker secret create db -` sends it.
        let body = br#"{"Name":"db","Labels":{"a":"b"},"Data":"aHVudGVyMg=="}"#;
        let c = blob_create(BlobKind::Secret, body).unwrap();
        assert_eq!(
            (c.name.as_str(), c.data.0.as_slice()),
            ("db", b"hunter2".as_slice())
        );
        assert_eq!(c.labels["a"], "b");
        let e = blob_create(
            BlobKind::Secret,
            br#"{"Name":"x","Data":"","Driver":{"Name":"vault"}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("SecretSpec.Driver"), "{}", e.message);
    }
}
