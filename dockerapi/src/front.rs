//! The front itself: each request's endpoint ([`crate::route`]) is answered through the node's
//! meshd (swarm calls) or passed to the node's engine ([`crate::proxy`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use mesh_api::transport::Client;
use mesh_api::{Info, Reply};
use mesh_cluster::state::NodeRole;
use serde_json::{Value, json};

use crate::convert::filters::Filters;
use crate::convert::objects::{SwarmInfo, swarm_info};
use crate::error::HttpError;
use crate::events::wants_swarm_events;
use crate::proxy::{self, Body, full};
use crate::route::{Endpoint, endpoint};

/// The filters of `GET /events` (moby's).
const EVENT_FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// The API version this front speaks (Debian's docker 20.10; newer clients negotiate down).
pub const API_VERSION: &str = "1.41";

/// A node's Engine API front: its meshd (the same local socket meshctl uses) and its engine.
#[derive(Clone)]
pub struct Front {
    pub meshd: Client,
    pub engine: PathBuf,
}

/// What a handler needs of the request: its query, headers and the whole body.
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Call {
    pub fn flag(&self, name: &str) -> bool {
        self.query
            .get(name)
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
    /// The `version` an update must name (moby: 400 when missing or not a number).
    pub fn version(&self) -> Result<u64, HttpError> {
        let v = self.param("version").unwrap_or("");
        v.parse().map_err(|_| {
            HttpError::bad_request(format!(
                "invalid version {v:?}: give the object's Version.Index as read (?version=N)"
            ))
        })
    }
}

pub fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub fn json_response(status: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Api-Version", API_VERSION)
        .body(full(value.to_string() + "\n"))
        .expect("a valid response")
}

pub fn empty_response(status: u16) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Api-Version", API_VERSION)
        .body(full(Bytes::new()))
        .expect("a valid response")
}

pub fn error_response(e: &HttpError) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", "application/json")
        .header("Api-Version", API_VERSION)
        .body(full(e.body() + "\n"))
        .expect("a valid response")
}

impl Front {
    /// Answers one request.
    pub async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let ep = endpoint(&method, &path);
        let result = match ep {
            Endpoint::Engine => proxy::forward(&self.engine, req).await,
            ep => self.swarm_call(ep, req).await,
        };
        result.unwrap_or_else(|e| {
            tracing::debug!("{method} {path}: {} {}", e.status, e.message);
            error_response(&e)
        })
    }

    async fn swarm_call(
        &self,
        ep: Endpoint,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, HttpError> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| HttpError::bad_request(format!("reading the request body: {e}")))?
            .to_bytes();
        let call = Call {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parse_query(parts.uri.query()),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        // The calls that may fall through to the engine need the request as it came.
        let original = || Request::from_parts(parts.clone(), full(body.clone()));
        match ep {
            Endpoint::Ping => self.ping(&call).await,
            Endpoint::Version => self.version().await,
            Endpoint::Info => self.info_endpoint().await,
            Endpoint::NotServed => Err(HttpError::not_implemented(&call.method, &call.path)),
            Endpoint::Events => {
                let filters = Filters::parse(call.param("filters"), EVENT_FILTERS)?;
                if wants_swarm_events(&filters) {
                    self.swarm_events(&filters, &call).await
                } else {
                    self.to_engine(original()).await
                }
            }
            Endpoint::NetworkList
            | Endpoint::NetworkCreate
            | Endpoint::NetworkInspect(_)
            | Endpoint::NetworkDelete(_) => self.network_call(ep, &call, original()).await,
            other => self.cluster_call(other, &call).await,
        }
    }

    /// meshd's reply to `req`, warnings apart.
    pub async fn call(&self, req: mesh_api::Request) -> Result<(Reply, Vec<String>), HttpError> {
        let reply = self.meshd.call(&req).await.map_err(HttpError::from)?;
        Ok(reply.into_parts())
    }

    pub async fn node_info(&self) -> Result<Info, HttpError> {
        match self.call(mesh_api::Request::Info).await? {
            (Reply::Info(i), _) => Ok(i),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// This node's info, when it is a manager; moby's 503 otherwise.
    pub async fn manager_info(&self) -> Result<Info, HttpError> {
        let info = self.node_info().await?;
        match (&info.node_id, info.role) {
            (None, _) => Err(HttpError::not_in_swarm()),
            (Some(_), Some(NodeRole::Manager)) => Ok(info),
            (Some(_), _) => Err(HttpError::not_a_manager()),
        }
    }

    async fn ping(&self, call: &Call) -> Result<Response<Body>, HttpError> {
        let swarm = match self.node_info().await {
            Ok(Info { node_id: None, .. }) => "inactive",
            Ok(Info {
                role: Some(NodeRole::Manager),
                ..
            }) => "active/manager",
            Ok(_) => "active/worker",
            Err(_) => "error",
        };
        let body = if call.method == "HEAD" { "" } else { "OK" };
        Ok(Response::builder()
            .status(200)
            .header("Api-Version", API_VERSION)
            .header("Ostype", "linux")
            .header("Docker-Experimental", "false")
            .header("Swarm", swarm)
            .header("Cache-Control", "no-cache, no-store, must-revalidate")
            .header("Pragma", "no-cache")
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(full(body))
            .expect("a valid response"))
    }

    /// The engine's `/version`, at the API version this front speaks, with meshd as a
    /// component.
    async fn version(&self) -> Result<Response<Body>, HttpError> {
        let mut v = proxy::get_json(&self.engine, &format!("/v{API_VERSION}/version")).await?;
        v["ApiVersion"] = json!(API_VERSION);
        let meshd = json!({ "Name": "meshd", "Version": env!("CARGO_PKG_VERSION"), "Details": {} });
        match v["Components"].as_array_mut() {
            Some(list) => list.push(meshd),
            None => v["Components"] = json!([meshd]),
        }
        Ok(json_response(200, &v))
    }

    /// The engine's `/info` with the swarm as meshd sees it.
    async fn info_endpoint(&self) -> Result<Response<Body>, HttpError> {
        let mut v = proxy::get_json(&self.engine, &format!("/v{API_VERSION}/info")).await?;
        let info = self.node_info().await?;
        let nodes = if info.role == Some(NodeRole::Manager) {
            match self.call(mesh_api::Request::NodeList).await {
                Ok((Reply::Nodes(n), _)) => Some(n.nodes),
                _ => None,
            }
        } else {
            None
        };
        v["Swarm"] = swarm_info(&SwarmInfo {
            info: &info,
            nodes: nodes.as_deref(),
        });
        Ok(json_response(200, &v))
    }
}

/// A reply of the wrong kind: meshd and this front disagree (a bug, not bad input).
pub fn unexpected(reply: &Reply) -> HttpError {
    HttpError::new(
        500,
        format!("meshd answered with an unexpected reply: {reply:?}"),
    )
}
