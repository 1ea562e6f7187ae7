//! `service logs`: the leader asks the nodes that hold the target's tasks for their lines and
//! relays them to the client; a follower relays the leader's stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use futures::StreamExt;
use mesh_cluster::Id;
use mesh_cluster::state::{Task, TaskState};
use tokio::sync::mpsc;

use mesh_api::{
    ApiError, LogRecord, LogsRequest, ManagerMessage, NodeLogsRequest, Request, StreamItem,
};

use super::{Dispatcher, LogEvent, LogStreamEntry, log_context};
use crate::lookup::{find_service, find_task};
use crate::manager::Manager;

/// Log batches a slow `service logs` client may fall behind by before its stream is cut.
const LOG_BACKLOG: usize = 1024;

impl Dispatcher {
    /// `service logs`: on the leader, asks every node that holds tasks of the target for their
    /// lines and relays them; elsewhere, relays the leader's stream.
    pub async fn service_logs(
        &self,
        req: LogsRequest,
        out: mpsc::Sender<Result<StreamItem, ApiError>>,
    ) {
        if !self.m.is_leader() {
            self.relay_stream(Request::ServiceLogs(req), out).await;
            return;
        }
        let state = match self.m.read().await {
            Ok(v) => v.applied.state,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        let tasks: Vec<&Task> = match find_service(&state, &req.target) {
            Ok(s) => state.tasks_of(&s.id).collect(),
            Err(not_service) => {
                let Some(t) = find_task(&state, &req.target) else {
                    let _ = out.send(Err(not_service)).await;
                    return;
                };
                vec![t]
            }
        };
        let mut by_node: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
        let mut contexts: HashMap<Id, String> = HashMap::new();
        for t in tasks {
            let Some(node) = &t.node_id else { continue };
            if t.status.state < TaskState::Assigned {
                continue;
            }
            by_node.entry(node.clone()).or_default().push(t.id.clone());
            if let Some(c) = log_context(&state, t, req.no_trunc) {
                contexts.insert(t.id.clone(), c);
            }
        }
        let dispatch = &self.m.inner.dispatch;
        let stream = dispatch.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(LOG_BACKLOG);
        let mut waiting = HashSet::new();
        let mut asked = Vec::new();
        for (node, task_ids) in by_node {
            let hostname = state
                .nodes
                .get(&node)
                .map_or_else(|| node.to_string(), |n| n.description.hostname.clone());
            let Some(session) = dispatch.session_of(&node) else {
                let _ = out
                    .send(Ok(StreamItem::Warning(format!(
                        "node {hostname} is not connected: the logs of its tasks are missing"
                    ))))
                    .await;
                continue;
            };
            waiting.insert(node.clone());
            asked.push((node, session, task_ids, hostname));
        }
        dispatch.streams().insert(
            stream,
            LogStreamEntry {
                tx,
                waiting: waiting.clone(),
            },
        );
        let _cleanup = EndStream {
            manager: &self.m,
            stream,
        };
        let mut hostnames = HashMap::new();
        for (node, session, tasks, hostname) in asked {
            let msg = ManagerMessage::Logs(NodeLogsRequest {
                stream,
                tasks,
                tail: req.tail,
                follow: req.follow,
                timestamps: req.timestamps,
            });
            if session.send(msg).await.is_err() {
                waiting.remove(&node);
            }
            hostnames.insert(node, hostname);
        }
        while !waiting.is_empty() {
            let event = tokio::select! {
                () = out.closed() => return,
                e = rx.recv() => e,
            };
            match event {
                None => return,
                Some(LogEvent::Lines(lines)) => {
                    let records: Vec<LogRecord> = lines
                        .into_iter()
                        .map(|l| LogRecord {
                            context: contexts
                                .get(&l.task_id)
                                .cloned()
                                .unwrap_or_else(|| l.task_id.to_string()),
                            stderr: l.stderr,
                            timestamp: l.timestamp,
                            text: l.text,
                        })
                        .collect();
                    if out.send(Ok(StreamItem::Logs(records))).await.is_err() {
                        return;
                    }
                }
                Some(LogEvent::End(node, error)) => {
                    if waiting.remove(&node)
                        && let Some(e) = error
                    {
                        let host = hostnames.get(&node).cloned().unwrap_or_default();
                        let _ = out
                            .send(Ok(StreamItem::Warning(format!("node {host}: {e}"))))
                            .await;
                    }
                    if let Some(s) = dispatch.streams().get_mut(&stream) {
                        s.waiting.remove(&node);
                    }
                }
            }
        }
    }

    /// Forwards a streaming request to the leader and its items back.
    async fn relay_stream(&self, req: Request, out: mpsc::Sender<Result<StreamItem, ApiError>>) {
        let Some((_, addr)) = self.m.leader() else {
            let _ = out.send(Err(ApiError::no_leader())).await;
            return;
        };
        let mut items = match self.m.inner.peers.client(&addr).stream(&req).await {
            Ok(s) => s,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        loop {
            let item = tokio::select! {
                () = out.closed() => return,
                i = items.next() => i,
            };
            let Some(item) = item else { return };
            let end = item.is_err();
            if out.send(item).await.is_err() || end {
                return;
            }
        }
    }
}

/// Ends a log stream: forgets it and tells the nodes still sending to stop.
struct EndStream<'a> {
    manager: &'a Manager,
    stream: u64,
}

impl Drop for EndStream<'_> {
    fn drop(&mut self) {
        let dispatch = &self.manager.inner.dispatch;
        let entry = dispatch.streams().remove(&self.stream);
        if let Some(entry) = entry {
            for node in entry.waiting {
                if let Some(s) = dispatch.session_of(&node) {
                    let _ = s.try_send(ManagerMessage::LogsCancel {
                        stream: self.stream,
                    });
                }
            }
        }
    }
}
