//! `GET /events` of the swarm: `service` and `node` events (create, update, remove), made by
//! comparing what meshd lists from one second to the next, as moby's `events.Message`s. A
//! request for other types (containers, images, ...) goes to the engine, whose events they are.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::Response;
use hyper::body::Frame;
use mesh_api::{Reply, Request};
use mesh_cluster::Id;
use serde_json::{Value, json};

use crate::convert::filters::Filters;
use crate::error::HttpError;
use crate::front::{API_VERSION, Call, Front, unexpected};
use crate::proxy::{Body, BoxError};

/// The event types meshd makes.
pub const SWARM_TYPES: &[&str] = &["service", "node"];

/// What one poll saw: each object's version and name, by type and id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<(&'static str, Id), (u64, String)>);

/// Are these filters for swarm events only (a `type` filter naming only service and node)?
pub fn wants_swarm_events(filters: &Filters) -> bool {
    let types = filters.values("type");
    !types.is_empty() && types.iter().all(|t| SWARM_TYPES.contains(&t.as_str()))
}

/// The events between two polls, stamped `now_ms`.
pub fn events_between(old: &Snapshot, new: &Snapshot, now_ms: u64) -> Vec<Value> {
    let message = |(kind, id): &(&'static str, Id), action: &str, name: &str| {
        json!({
            "Type": kind,
            "Action": action,
            "Actor": { "ID": id.as_str(), "Attributes": { "name": name } },
            "scope": "swarm",
            "time": now_ms / 1000,
            "timeNano": u128::from(now_ms) * 1_000_000,
        })
    };
    let mut out = Vec::new();
    for (key, (version, name)) in &new.0 {
        match old.0.get(key) {
            None => out.push(message(key, "create", name)),
            Some((was, _)) if was != version => out.push(message(key, "update", name)),
            Some(_) => {}
        }
    }
    for (key, (_, name)) in &old.0 {
        if !new.0.contains_key(key) {
            out.push(message(key, "remove", name));
        }
    }
    out
}

impl Front {
    async fn snapshot(&self, types: &[String]) -> Result<Snapshot, HttpError> {
        let mut snap = Snapshot::default();
        if types.iter().any(|t| t == "service") {
            match self.call(Request::ServiceList).await? {
                (Reply::Services(list), _) => {
                    for s in list {
                        let s = s.service;
                        snap.0
                            .insert(("service", s.id), (s.meta.version, s.spec.name));
                    }
                }
                (other, _) => return Err(unexpected(&other)),
            }
        }
        if types.iter().any(|t| t == "node") {
            match self.call(Request::NodeList).await? {
                (Reply::Nodes(list), _) => {
                    for n in list.nodes {
                        snap.0
                            .insert(("node", n.id), (n.meta.version, n.description.hostname));
                    }
                }
                (other, _) => return Err(unexpected(&other)),
            }
        }
        Ok(snap)
    }

    /// The swarm's events from now on (`since` cannot replay: meshd keeps no event log), until
    /// `until` or the client goes.
    pub(crate) async fn swarm_events(
        &self,
        filters: &Filters,
        call: &Call,
    ) -> Result<Response<Body>, HttpError> {
        self.manager_info().await?;
        let until = match call.param("until") {
            None | Some("") => None,
            Some(u) => Some(parse_unix_time(u)?),
        };
        let types = filters.values("type").to_vec();
        let mut last = self.snapshot(&types).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(64);
        let front = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = mesh_api::now_millis();
                if until.is_some_and(|u| now / 1000 >= u) {
                    return;
                }
                let Ok(snap) = front.snapshot(&types).await else {
                    continue;
                };
                for e in events_between(&last, &snap, now) {
                    let line = Bytes::from(e.to_string() + "\n");
                    if tx.send(Ok(Frame::data(line))).await.is_err() {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                last = snap;
            }
        });
        let frames = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        Ok(Response::builder()
            .status(200)
            .header("Content-Type", "application/json")
            .header("Api-Version", API_VERSION)
            .body(http_body_util::BodyExt::boxed_unsync(StreamBody::new(
                frames,
            )))
            .expect("a valid response"))
    }
}

/// `until`: Unix seconds, with an optional fraction (`1700000000.5`), as docker sends it.
fn parse_unix_time(text: &str) -> Result<u64, HttpError> {
    let secs = text.split('.').next().unwrap_or("");
    secs.parse().map_err(|_| {
        HttpError::bad_request(format!(
            "invalid until {text:?}: meshd's swarm events take Unix seconds"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(items: &[(&'static str, &str, u64, &str)]) -> Snapshot {
        Snapshot(
            items
                .iter()
                .map(|(k, id, v, n)| ((*k, Id::from(*id)), (*v, (*n).to_owned())))
                .collect(),
        )
    }

    #[test]
    fn polls_become_create_update_and_remove_events() {
        let old = snap(&[("service", "s1", 1, "web"), ("node", "n1", 3, "node1")]);
        let new = snap(&[("service", "s1", 2, "web"), ("service", "s2", 1, "db")]);
        let events = events_between(&old, &new, 1_700_000_000_123);
        let actions: Vec<(String, String, String)> = events
            .iter()
            .map(|e| {
                (
                    e["Type"].as_str().unwrap().to_owned(),
                    e["Action"].as_str().unwrap().to_owned(),
                    e["Actor"]["Attributes"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("service".into(), "update".into(), "web".into()),
                ("service".into(), "create".into(), "db".into()),
                ("node".into(), "remove".into(), "node1".into()),
            ]
        );
        // moby's `events.Message`: scope, time in seconds and nanoseconds.
        assert_eq!(events[0]["scope"], "swarm");
        assert_eq!(events[0]["time"], 1_700_000_000);
        assert_eq!(
            events[0]["timeNano"].as_u64(),
            Some(1_700_000_000_123_000_000)
        );
        assert!(events_between(&new, &new, 0).is_empty());
    }

    #[test]
    fn only_swarm_types_are_served_here() {
        let f = |t: &str| Filters::parse(Some(t), &["type", "event"]).unwrap();
        assert!(wants_swarm_events(&f(r#"{"type":{"service":true}}"#)));
        assert!(wants_swarm_events(&f(
            r#"{"type":{"service":true,"node":true}}"#
        )));
        assert!(!wants_swarm_events(&f(r#"{"type":{"container":true}}"#)));
        assert!(!wants_swarm_events(&f(
            r#"{"type":{"service":true,"container":true}}"#
        )));
        assert!(!wants_swarm_events(&f(r#"{"event":{"start":true}}"#)));
        assert_eq!(parse_unix_time("1700000000.5").unwrap(), 1_700_000_000);
        assert_eq!(parse_unix_time("soon").unwrap_err().status, 400);
    }
}
