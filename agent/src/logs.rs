//! `service logs` on a node: the leader names tasks, the agent finds their containers (by the
//! `meshd.task` and `meshd.node` labels) and sends their lines up its session, in batches, until
//! they end (or, with `follow`, until the leader cancels the stream).

use futures::{FutureExt, StreamExt};
use mesh_api::{AgentLogLine, AgentMessage, NodeLogsRequest};
use mesh_cluster::Id;
use mesh_engine::{EngineHandle, LABEL_NODE, LABEL_TASK, LogStream};
use tokio::sync::mpsc;

/// Lines sent in one message at most.
const BATCH: usize = 256;

/// Streams the logs `req` asks for, then says the stream ended (with the error, if any).
pub(crate) async fn send_logs(
    engine: EngineHandle,
    req: NodeLogsRequest,
    node_id: Id,
    up: mpsc::Sender<AgentMessage>,
) {
    let stream = req.stream;
    let result = stream_lines(&engine, req, &node_id, &up).await;
    let _ = up
        .send(AgentMessage::LogsEnd {
            stream,
            error: result.err(),
        })
        .await;
}

async fn stream_lines(
    engine: &EngineHandle,
    req: NodeLogsRequest,
    node_id: &Id,
    up: &mpsc::Sender<AgentMessage>,
) -> Result<(), String> {
    let engine = engine.get().await.map_err(|e| e.to_string())?;
    let node_label = format!("{LABEL_NODE}={node_id}");
    let mut streams = Vec::new();
    for task in &req.tasks {
        let task_label = format!("{LABEL_TASK}={task}");
        let containers = engine
            .list(&[&task_label, &node_label])
            .await
            .map_err(|e| e.to_string())?;
        for c in containers {
            let task = task.clone();
            streams.push(
                engine
                    .logs(&c.id, req.tail, req.follow, req.timestamps)
                    .map(move |line| (task.clone(), line))
                    .boxed(),
            );
        }
    }
    let mut lines = futures::stream::select_all(streams);
    let to_line = |task: Id, l: mesh_engine::LogLine| AgentLogLine {
        task_id: task,
        stderr: l.stream == LogStream::Stderr,
        timestamp: l.timestamp,
        text: l.text,
    };
    while let Some((task, first)) = lines.next().await {
        let mut batch = vec![to_line(task, first.map_err(|e| e.to_string())?)];
        // Whatever else is ready goes in the same message.
        while batch.len() < BATCH {
            match lines.next().now_or_never() {
                Some(Some((task, line))) => {
                    batch.push(to_line(task, line.map_err(|e| e.to_string())?));
                }
                _ => break,
            }
        }
        if up
            .send(AgentMessage::Logs {
                stream: req.stream,
                lines: batch,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}
