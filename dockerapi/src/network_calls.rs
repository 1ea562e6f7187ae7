//! `/networks`: overlay networks are the swarm's (answered through meshd), every other driver
//! is the engine's (passed through); a list is both, as a swarm manager's dockerd lists them.

use std::collections::BTreeMap;

use http_body_util::BodyExt;
use hyper::{Request, Response};
use mesh_api::Reply;
use mesh_cluster::state::{Network, NetworkSpec};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::convert::filters::{Filters, label_matches};
use crate::convert::objects;
use crate::convert::unsupported::refuse_unsupported;
use crate::error::HttpError;
use crate::front::{Call, Front, empty_response, json_response, unexpected};
use crate::proxy::{self, Body};
use crate::route::Endpoint;

type Answer = Result<Response<Body>, HttpError>;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiNetworkCreate {
    name: String,
    check_duplicate: bool,
    driver: String,
    attachable: bool,
    ingress: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<ApiIpam>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    scope: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiIpam {
    driver: String,
    config: Option<Vec<ApiIpamConfig>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiIpamConfig {
    subnet: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// The driver a `POST /networks/create` body asks for (`bridge` when none, as dockerd).
pub fn requested_driver(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["Driver"].as_str().map(str::to_owned))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "bridge".to_owned())
}

/// An overlay `POST /networks/create` body as meshd's spec.
pub fn overlay_spec(body: &[u8]) -> Result<NetworkSpec, HttpError> {
    let api: ApiNetworkCreate = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("invalid network spec: {e}")))?;
    let _ = api.check_duplicate; // meshd refuses a duplicate name always.
    refuse_unsupported("NetworkCreateRequest", &api.rest)?;
    if !api.scope.is_empty() && api.scope != "swarm" {
        return Err(HttpError::bad_request(format!(
            "invalid scope {:?} for an overlay network: expected swarm",
            api.scope
        )));
    }
    let ipam = api.ipam.unwrap_or_default();
    refuse_unsupported("IPAM", &ipam.rest)?;
    if !ipam.driver.is_empty() && ipam.driver != "default" {
        return Err(HttpError::bad_request(format!(
            "IPAM driver {:?} is not supported by meshd: expected default",
            ipam.driver
        )));
    }
    let configs = ipam.config.unwrap_or_default();
    if configs.len() > 1 {
        return Err(HttpError::bad_request(
            "meshd gives an overlay network one subnet: give at most one IPAM.Config",
        ));
    }
    let subnet = match configs.into_iter().next() {
        Some(c) => {
            refuse_unsupported("IPAM.Config[]", &c.rest)?;
            if c.subnet.is_empty() {
                None
            } else {
                Some(c.subnet.parse().map_err(|e| {
                    HttpError::bad_request(format!("invalid subnet {:?}: {e}", c.subnet))
                })?)
            }
        }
        None => None,
    };
    Ok(NetworkSpec {
        name: api.name,
        driver: "overlay".to_owned(),
        subnet,
        attachable: api.attachable,
        ingress: api.ingress,
        labels: api.labels.unwrap_or_default(),
        options: api.options.unwrap_or_default(),
    })
}

fn network_passes(filters: &Filters, n: &Network) -> bool {
    filters.pass("name", |v| n.spec.name.contains(v))
        && filters.pass("id", |v| n.id.matches_prefix(v))
        && filters.pass("driver", |v| v == "overlay")
        && filters.pass("scope", |v| v == "swarm")
        && filters.pass("type", |v| v == "custom")
        && filters.pass("label", |v| label_matches(&n.spec.labels, v))
}

impl Front {
    pub(crate) async fn network_call(
        &self,
        ep: Endpoint,
        call: &Call,
        original: Request<Body>,
    ) -> Answer {
        match ep {
            Endpoint::NetworkList => self.network_list(call, original).await,
            Endpoint::NetworkCreate => {
                if requested_driver(&call.body) != "overlay" {
                    return self.to_engine(original).await;
                }
                self.manager_info().await?;
                let spec = overlay_spec(&call.body)?;
                match self.call(mesh_api::Request::NetworkCreate { spec }).await? {
                    (Reply::NetworkCreated { id }, _) => Ok(json_response(
                        201,
                        &json!({ "Id": id.as_str(), "Warning": "" }),
                    )),
                    (other, _) => Err(unexpected(&other)),
                }
            }
            Endpoint::NetworkInspect(network) => {
                if !self.is_manager().await {
                    return self.to_engine(original).await;
                }
                match self
                    .call(mesh_api::Request::NetworkInspect { network })
                    .await
                {
                    Ok((Reply::Network(r), _)) => {
                        Ok(json_response(200, &objects::network_reply(&r)))
                    }
                    Ok((other, _)) => Err(unexpected(&other)),
                    Err(e) if e.status == 404 => self.to_engine(original).await,
                    Err(e) => Err(e),
                }
            }
            Endpoint::NetworkDelete(network) => {
                if !self.is_manager().await {
                    return self.to_engine(original).await;
                }
                match self
                    .call(mesh_api::Request::NetworkRemove { network })
                    .await
                {
                    Ok(_) => Ok(empty_response(204)),
                    Err(e) if e.status == 404 => self.to_engine(original).await,
                    Err(e) => Err(e),
                }
            }
            _ => Err(HttpError::not_implemented(&call.method, &call.path)),
        }
    }

    async fn is_manager(&self) -> bool {
        self.manager_info().await.is_ok()
    }

    pub(crate) async fn to_engine(&self, req: Request<Body>) -> Answer {
        let resp = proxy::send(&self.engine, req).await?;
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            body.map_err(proxy::BoxError::from).boxed_unsync(),
        ))
    }

    async fn network_list(&self, call: &Call, original: Request<Body>) -> Answer {
        let filters = Filters::parse(
            call.param("filters"),
            &["dangling", "driver", "id", "label", "name", "scope", "type"],
        )?;
        let resp = proxy::send(&self.engine, original).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpError::new(502, format!("reading the engine's networks: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Ok(Response::builder()
                .status(status)
                .header("Content-Type", "application/json")
                .body(proxy::full(bytes))
                .expect("a valid response"));
        }
        let mut list: Vec<Value> = serde_json::from_slice(&bytes)
            .map_err(|e| HttpError::new(502, format!("the engine's networks: {e}")))?;
        if self.is_manager().await && filters.values("dangling").is_empty() {
            let networks = match self.call(mesh_api::Request::NetworkList).await? {
                (Reply::Networks(n), _) => n,
                (other, _) => return Err(unexpected(&other)),
            };
            list.extend(
                networks
                    .iter()
                    .filter(|n| network_passes(&filters, n))
                    .map(|n| objects::network(n, None)),
            );
        }
        Ok(json_response(200, &json!(list)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_create_body_becomes_a_spec() {
        // What `docker network create -d overlay --subnet 10.9.0.0/24 --attachable -o a=b
        // --label l=v front` sends (swagger `NetworkCreateRequest`).
        let body = br#"{"Name":"front","CheckDuplicate":true,"Driver":"overlay","Scope":"",
            "EnableIPv6":false,"IPAM":{"Driver":"default","Config":[{"Subnet":"10.9.0.0/24"}],
            "Options":{}},"Internal":false,"Attachable":true,"Ingress":false,"ConfigOnly":false,
            "ConfigFrom":null,"Options":{"a":"b"},"Labels":{"l":"v"}}"#;
        assert_eq!(requested_driver(body), "overlay");
        let s = overlay_spec(body).unwrap();
        assert_eq!(s.name, "front");
        assert_eq!(s.subnet.unwrap().to_string(), "10.9.0.0/24");
        assert!(s.attachable && !s.ingress);
        assert_eq!(s.options["a"], "b");
        assert_eq!(s.labels["l"], "v");
        assert_eq!(requested_driver(br#"{"Name":"x"}"#), "bridge");
    }

    #[test]
    fn what_an_overlay_cannot_be_is_refused() {
        let e = overlay_spec(br#"{"Name":"x","Driver":"overlay","Internal":true}"#).unwrap_err();
        assert!(e.message.contains("Internal"), "{}", e.message);
        let e = overlay_spec(
            br#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.9.0.0/24","Gateway":"10.9.0.9"}]}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("Gateway"), "{}", e.message);
    }
}
