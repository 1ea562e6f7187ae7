//! `GET /services/{id}/logs` and `/tasks/{id}/logs`: meshd's log stream as moby sends it, docker's multiplexed frames
//! (`[stream, 0, 0, 0, len(be32)]` then the line) of `[TIMESTAMP ]DETAILS MESSAGE`, where the
//! details name the node, service and task ids the docker CLI turns back into its context.

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::Response;
use hyper::body::Frame;
use mesh_api::{LogRecord, LogsRequest, Request, ServiceTasksReply, StreamItem};
use mesh_cluster::state::Task;

use crate::error::HttpError;
use crate::front::{API_VERSION, Call, Front};
use crate::proxy::{Body, BoxError};

/// One frame of docker's multiplexed stream (1 stdout, 2 stderr).
pub fn frame(stderr: bool, line: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + line.len());
    b.put_u8(if stderr { 2 } else { 1 });
    b.put_slice(&[0, 0, 0]);
    b.put_u32(line.len() as u32);
    b.put_slice(line);
    b.freeze()
}

/// The task id in meshd's `SERVICE.SLOT.TASKID@HOSTNAME` context (full ids: `no_trunc`).
pub fn task_id_of(context: &str) -> &str {
    let left = context.trim().split('@').next().unwrap_or("");
    left.rsplit('.').next().unwrap_or("")
}

/// A record as the line moby writes.
pub fn log_line(record: &LogRecord, task: Option<&Task>, timestamps: bool) -> Vec<u8> {
    let mut line = String::new();
    if timestamps {
        line.push_str(
            record
                .timestamp
                .as_deref()
                .unwrap_or("0001-01-01T00:00:00Z"),
        );
        line.push(' ');
    }
    let (node, service, id) = task.map_or(("", "", task_id_of(&record.context)), |t| {
        (
            t.node_id.as_ref().map_or("", |n| n.as_str()),
            t.service_id.as_str(),
            t.id.as_str(),
        )
    });
    line.push_str("com.docker.swarm.node.id=");
    line.push_str(node);
    line.push_str(",com.docker.swarm.service.id=");
    line.push_str(service);
    line.push_str(",com.docker.swarm.task.id=");
    line.push_str(id);
    line.push(' ');
    line.push_str(&record.text);
    if !line.ends_with('\n') {
        line.push('\n');
    }
    line.into_bytes()
}

impl Front {
    /// The logs of `target` (a service or a task), whose tasks are among `tasks`.
    pub(crate) async fn logs(
        &self,
        target: &str,
        tasks: ServiceTasksReply,
        call: &Call,
    ) -> Result<Response<Body>, HttpError> {
        if !call.flag("stdout") && !call.flag("stderr") {
            return Err(HttpError::bad_request(
                "Bad parameters: you must choose at least one stream",
            ));
        }
        let tail = match call.param("tail") {
            None | Some("all" | "") => None,
            Some(n) => Some(n.parse().map_err(|_| {
                HttpError::bad_request(format!("invalid tail {n:?}: expected a number or all"))
            })?),
        };
        let timestamps = call.flag("timestamps");
        let request = Request::ServiceLogs(LogsRequest {
            target: target.to_owned(),
            tail,
            follow: call.flag("follow"),
            timestamps,
            no_trunc: true,
        });
        let items = self.meshd.stream(&request).await.map_err(HttpError::from)?;
        let (want_out, want_err) = (call.flag("stdout"), call.flag("stderr"));
        let frames = items.flat_map(move |item| {
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = match item {
                Ok(StreamItem::Logs(records)) => records
                    .iter()
                    .filter(|r| if r.stderr { want_err } else { want_out })
                    .map(|r| {
                        let task = tasks
                            .tasks
                            .iter()
                            .find(|t| t.id.as_str() == task_id_of(&r.context));
                        Ok(Frame::data(frame(r.stderr, &log_line(r, task, timestamps))))
                    })
                    .collect(),
                Ok(StreamItem::Warning(w)) => {
                    tracing::warn!("service logs: {w}");
                    Vec::new()
                }
                Err(e) => vec![Err(BoxError::from(e.message))],
            };
            futures::stream::iter(frames)
        });
        Ok(Response::builder()
            .status(200)
            .header("Content-Type", "application/vnd.docker.raw-stream")
            .header("Api-Version", API_VERSION)
            .body(http_body_util::BodyExt::boxed_unsync(StreamBody::new(
                frames,
            )))
            .expect("a valid response"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_dockers_multiplexed_stream() {
        let f = frame(true, b"hi\n");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
        assert_eq!(frame(false, b"")[0], 1);
    }

    #[test]
    fn a_line_carries_the_ids_the_cli_reads_back() {
        assert_eq!(
            task_id_of("web.1.abcdef0123456789@n1   "),
            "abcdef0123456789"
        );
        let r = LogRecord {
            context: "web.1.t1@n1".into(),
            stderr: false,
            timestamp: Some("2026-12-06T13:00:00.000000000Z".into()),
            text: "hello".into(),
        };
        let line = String::from_utf8(log_line(&r, None, true)).unwrap();
        assert_eq!(
            line,
            "2026-12-06T13:00:00.000000000Z com.docker.swarm.node.id=,com.docker.swarm.service.id=,com.docker.swarm.task.id=t1 hello\n"
        );
    }
}
