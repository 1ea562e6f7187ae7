//! Carrying out a task's steps so that a failure leaves the task as it was found.

use std::fmt;

use crate::OverlayError;

/// Runs `steps` in order. `run` reports the host veth a step created, if any; when a step
/// fails, the veths created so far are deleted (newest first), so a failed plumb leaves the
/// task as it found it, and the step's error is returned.
///
/// Plain closures returning futures, not async closures: the future of an async closure that
/// takes a reference is `Send` for one lifetime only, which made [`crate::Overlay::plumb_task`]
/// impossible to spawn on a multi-threaded runtime.
pub async fn run_undoable<'s, S, Run, RunFut, Undo, UndoFut>(
    steps: &'s [S],
    mut run: Run,
    mut undo: Undo,
) -> Result<(), OverlayError>
where
    S: fmt::Display,
    Run: FnMut(&'s S) -> RunFut,
    RunFut: Future<Output = Result<Option<String>, OverlayError>>,
    Undo: FnMut(String) -> UndoFut,
    UndoFut: Future<Output = Result<(), OverlayError>>,
{
    let mut created: Vec<String> = Vec::new();
    for step in steps {
        match run(step).await {
            Ok(Some(host)) => created.push(host),
            Ok(None) => {}
            Err(error) => {
                let mut failures = Vec::new();
                for host in created.iter().rev() {
                    if let Err(e) = undo(host.clone()).await {
                        failures.push(format!("{host}: {e}"));
                    }
                }
                return Err(if failures.is_empty() {
                    error
                } else {
                    OverlayError::UndoFailed {
                        error: Box::new(error),
                        undo: failures.join("; "),
                    }
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::TaskStep;
    use crate::plan::fixtures::*;
    use crate::plan::task::plan_task;

    #[test]
    fn a_failed_step_undoes_the_veths_created_before_it() {
        let plan = plan_task(&[iface(4097, 0), iface(4098, 1)], None, &fresh_task()).unwrap();
        for fail_at in 0..plan.len() {
            let undone = std::cell::RefCell::new(Vec::<String>::new());
            let mut ran = 0;
            let result = futures::executor::block_on(run_undoable(
                &plan,
                |s: &TaskStep| {
                    let r = if ran == fail_at {
                        Err(OverlayError::invalid(format!("injected at {s}")))
                    } else {
                        ran += 1;
                        Ok(match s {
                            TaskStep::CreateVeth { host, .. } => Some(host.clone()),
                            _ => None,
                        })
                    };
                    async move { r }
                },
                |h: String| {
                    undone.borrow_mut().push(h);
                    async { Ok(()) }
                },
            ));
            let e = result.unwrap_err().to_string();
            assert!(e.starts_with("injected at"), "{e}");
            let want: Vec<String> = match fail_at {
                0 => vec![],
                1 => vec!["mvabcdefghij0".into()],
                _ => vec!["mvabcdefghij1".into(), "mvabcdefghij0".into()],
            };
            assert_eq!(*undone.borrow(), want, "failing at step {fail_at}");
        }
        // A failed undo is reported with the original error.
        let result = futures::executor::block_on(run_undoable(
            &plan,
            |s: &TaskStep| {
                let r = match s {
                    TaskStep::CreateVeth { host, .. } => Ok(Some(host.clone())),
                    _ => Err(OverlayError::invalid("boom")),
                };
                async move { r }
            },
            |_h: String| async { Err(OverlayError::invalid("gone")) },
        ));
        let e = result.unwrap_err().to_string();
        assert!(e.contains("boom; undoing what was done failed too"), "{e}");
    }
}
