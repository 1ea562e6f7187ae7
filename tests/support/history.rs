//! A recorded history of operations on named registers (a service's label, a secret), and the
//! check that it is linearizable: that some order of the operations, each placed between its
//! call and its answer, explains every answer (Wing and Gong's search, as Knossos and porcupine
//! do, one register at a time since registers are independent). An operation whose answer never
//! came (a timeout, a lost connection) may have taken effect at any time after its call, or not
//! at all.

use std::collections::{BTreeMap, HashSet};

/// What a client asked of one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// Create it with this value (refused if it exists).
    Create(u64),
    /// Set this value (refused if it does not exist).
    Update(u64),
    /// Remove it (refused if it does not exist).
    Remove,
    /// Read its value.
    Read,
}

/// What the cluster answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    Done,
    /// Refused: it exists already.
    Exists,
    /// Refused: it does not exist.
    Missing,
    /// What a read saw.
    Value(Option<u64>),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub key: String,
    pub call: Call,
    /// When it was called and answered, in any monotonic unit; `answer` is `None` (and `end`
    /// is ignored) when the outcome is unknown.
    pub start: u64,
    pub end: u64,
    pub answer: Option<Answer>,
}

/// The answer `call` gets from a register holding `state`, and what it holds after.
pub fn apply(state: Option<u64>, call: Call) -> (Answer, Option<u64>) {
    match (call, state) {
        (Call::Create(v), None) | (Call::Update(v), Some(_)) => (Answer::Done, Some(v)),
        (Call::Create(_), Some(_)) => (Answer::Exists, state),
        (Call::Update(_) | Call::Remove, None) => (Answer::Missing, None),
        (Call::Remove, Some(_)) => (Answer::Done, None),
        (Call::Read, _) => (Answer::Value(state), state),
    }
}

/// Checks every register's history; `Err` names the first register that no order explains.
pub fn check(ops: &[Op]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        if !linearizable(&ops) {
            let lines: Vec<String> = ops.iter().map(|o| format!("  {o:?}")).collect();
            return Err(format!(
                "register {key}: no order explains its history:\n{}",
                lines.join("\n")
            ));
        }
    }
    Ok(())
}

/// One register, starting absent. Depth-first over "which operation takes effect next", with
/// the (done set, state) pairs already explored remembered.
fn linearizable(ops: &[&Op]) -> bool {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| o.start);
    let end = |o: &Op| if o.answer.is_some() { o.end } else { u64::MAX };
    let words = ops.len().div_ceil(64);
    let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    let definite: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].answer.is_some())
        .collect();
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack = vec![(vec![0u64; words], None::<u64>)];
    while let Some((done, state)) = stack.pop() {
        if definite.iter().all(|&i| is_done(&done, i)) {
            return true;
        }
        if !seen.insert((done.clone(), state)) {
            continue;
        }
        // An operation may take effect next only if no operation not yet done was answered
        // before it was called. In call order, the window ends where calls pass that answer.
        let mut horizon = u64::MAX;
        let mut window = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if is_done(&done, i) {
                continue;
            }
            if op.start > horizon {
                break;
            }
            horizon = horizon.min(end(op));
            window.push(i);
        }
        for i in window {
            let op = ops[i];
            if op.start > horizon {
                continue;
            }
            let (answer, next) = apply(state, op.call);
            if op.answer.is_none_or(|a| a == answer) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                stack.push((d, next));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, call: Call, start: u64, end: u64, answer: Option<Answer>) -> Op {
        Op {
            key: key.to_owned(),
            call,
            start,
            end,
            answer,
        }
    }

    #[test]
    fn histories_are_checked_as_registers() {
        use Answer::{Done, Exists, Missing, Value};
        use Call::{Create, Read, Remove, Update};
        let rows: Vec<(&str, Vec<Op>, bool)> = vec![
            (
                "sequential create, update, read",
                vec![
                    op("a", Create(1), 0, 1, Some(Done)),
                    op("a", Update(2), 2, 3, Some(Done)),
                    op("a", Read, 4, 5, Some(Value(Some(2)))),
                ],
                true,
            ),
            (
                "a read after an acknowledged write sees an older value: stale",
                vec![
                    op("a", Create(1), 0, 1, Some(Done)),
                    op("a", Update(2), 2, 3, Some(Done)),
                    op("a", Read, 4, 5, Some(Value(Some(1)))),
                ],
                false,
            ),
            (
                "an acknowledged create lost",
                vec![
                    op("a", Create(1), 0, 1, Some(Done)),
                    op("a", Read, 2, 3, Some(Value(None))),
                ],
                false,
            ),
            (
                "a read concurrent with a write may see either value",
                vec![
                    op("a", Create(1), 0, 1, Some(Done)),
                    op("a", Update(2), 2, 6, Some(Done)),
                    op("a", Read, 3, 4, Some(Value(Some(1)))),
                    op("a", Read, 5, 7, Some(Value(Some(2)))),
                ],
                true,
            ),
            (
                "two concurrent creates: one wins, the other is refused",
                vec![
                    op("a", Create(1), 0, 5, Some(Exists)),
                    op("a", Create(2), 1, 4, Some(Done)),
                    op("a", Read, 6, 7, Some(Value(Some(2)))),
                ],
                true,
            ),
            (
                "both concurrent creates acknowledged: impossible",
                vec![
                    op("a", Create(1), 0, 5, Some(Done)),
                    op("a", Create(2), 1, 4, Some(Done)),
                ],
                false,
            ),
            (
                "an unknown write may have taken effect, late",
                vec![
                    op("a", Create(1), 0, 1, Some(Done)),
                    op("a", Update(2), 2, 0, None),
                    op("a", Read, 10, 11, Some(Value(Some(1)))),
                    op("a", Read, 12, 13, Some(Value(Some(2)))),
                ],
                true,
            ),
            (
                "but not undone once seen",
                vec![
                    op("a", Create(1), 0, 1, Some(Done)),
                    op("a", Update(2), 2, 0, None),
                    op("a", Read, 10, 11, Some(Value(Some(2)))),
                    op("a", Read, 12, 13, Some(Value(Some(1)))),
                ],
                false,
            ),
            (
                "remove then update is refused as missing",
                vec![
                    op("a", Create(1), 0, 1, Some(Done)),
                    op("a", Remove, 2, 3, Some(Done)),
                    op("a", Update(3), 4, 5, Some(Missing)),
                    op("b", Create(1), 0, 1, Some(Done)),
                ],
                true,
            ),
        ];
        for (what, ops, want) in rows {
            assert_eq!(check(&ops).is_ok(), want, "{what}: {:?}", check(&ops));
        }
    }

    #[test]
    fn long_histories_are_checked() {
        let mut ops = vec![op("a", Call::Create(0), 0, 1, Some(Answer::Done))];
        for i in 1..2_000u64 {
            // Two clients: a write and a read of the value before or after it, overlapping.
            ops.push(op(
                "a",
                Call::Update(i),
                10 * i,
                10 * i + 6,
                Some(Answer::Done),
            ));
            let seen = if i % 2 == 0 { i } else { i - 1 };
            ops.push(op(
                "a",
                Call::Read,
                10 * i + 2,
                10 * i + 4,
                Some(Answer::Value(Some(seen))),
            ));
        }
        ops.push(op("a", Call::Remove, 100_000, 0, None));
        assert_eq!(check(&ops), Ok(()));
        ops.push(op(
            "a",
            Call::Read,
            100_001,
            100_002,
            Some(Answer::Value(Some(5))),
        ));
        assert!(check(&ops).is_err());
    }
}
