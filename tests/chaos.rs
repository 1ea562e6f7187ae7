//! Chaos: clients write and read services and secrets through every manager while a nemesis
//! kills the leader, cuts a manager off (link down), drops a third of a manager's packets (`tc
//! netem`) and restarts a manager. Afterwards the recorded history must be linearizable
//! (`support::history`), no acknowledged write may be lost, and every manager must hold the same
//! state. A short fixed run here (3 managers); `scripts/chaos.sh [SECONDS] [MANAGERS]` runs a
//! long one (`MESH_CHAOS_SECS`, `MESH_CHAOS_MANAGERS`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::history::{self, Answer, Call, Op};
use crate::support::{Lab, MESHCTL, eventually, stderr, stdout};

/// The registers: services (their label `v`) the clients fight over. Names with a `-`: a
/// name is also looked up as an id prefix when no service has it (as docker does), and ids are
/// base 36, so `k1` could find another service.
const KEYS: [&str; 5] = ["key-0", "key-1", "key-2", "key-3", "key-4"];
const CLIENTS: u64 = 3;
/// How long a client waits for one answer before it counts the outcome as unknown.
const CALL_TIMEOUT: &str = "20";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The lab and the clock every operation is timed by.
struct Cluster {
    lab: Lab,
    managers: Vec<String>,
    started: Instant,
    /// Members the nemesis has taken down (clients skip them: a refused connection tells
    /// nothing the history needs).
    down: Mutex<BTreeSet<String>>,
}

impl Cluster {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// `meshctl ARGS` against `member`'s meshd, bounded in time.
    fn meshctl(&self, member: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let i: usize = member[1..].parse().unwrap();
        let socket = format!("unix://{}", self.lab.path(&format!("n{i}/meshd.sock")));
        let mut c = Command::new("timeout");
        c.args([CALL_TIMEOUT, MESHCTL])
            .args(args)
            .env("MESH_HOST", socket);
        match stdin {
            None => c.output().expect("run meshctl"),
            Some(text) => {
                use std::io::Write;
                let mut child = c
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("run meshctl");
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait_with_output().expect("meshctl's output")
            }
        }
    }

    fn live(&self, pick: u64) -> String {
        let down = self.down.lock().unwrap();
        let live: Vec<&String> = self
            .managers
            .iter()
            .filter(|m| !down.contains(*m))
            .collect();
        live[pick as usize % live.len()].clone()
    }

    fn leader(&self) -> Option<String> {
        let out = self.meshctl(&self.live(0), &["node", "ls"], None);
        let text = stdout(&out);
        let row = text.lines().find(|l| l.contains(" Leader "))?;
        let host = row
            .split_whitespace()
            .find(|w| w.starts_with(&self.lab.prefix))?;
        Some(host.rsplit('-').next()?.to_owned())
    }
}

/// What an answer says about the register, or `None` when it says nothing certain.
fn answer_of(call: Call, out: &Output) -> Option<Answer> {
    let err = stderr(out);
    if out.status.success() {
        return Some(match call {
            Call::Read => Answer::Value(label_v(&stdout(out))),
            _ => Answer::Done,
        });
    }
    if err.contains("already exists") {
        Some(Answer::Exists)
    } else if err.contains("no such service") {
        Some(match call {
            Call::Read => Answer::Value(None),
            _ => Answer::Missing,
        })
    } else {
        None
    }
}

/// The label `v` of `service inspect`'s JSON.
fn label_v(inspect: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(inspect).ok()?;
    let first = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
    first["Spec"]["Labels"]["v"].as_str()?.parse().ok()
}

fn run_call(c: &Cluster, member: &str, key: &str, call: Call, image: &str) -> Output {
    match call {
        Call::Create(v) => {
            let label = format!("v={v}");
            c.meshctl(
                member,
                &[
                    "service",
                    "create",
                    "-d",
                    "--no-resolve-image",
                    "--replicas",
                    "0",
                    "--name",
                    key,
                    "--label",
                    &label,
                    image,
                ],
                None,
            )
        }
        Call::Update(v) => {
            let label = format!("v={v}");
            c.meshctl(
                member,
                &["service", "update", "-d", "--label-add", &label, key],
                None,
            )
        }
        Call::Remove => c.meshctl(member, &["service", "rm", key], None),
        Call::Read => c.meshctl(member, &["service", "inspect", key], None),
    }
}

/// One client: random calls on random registers through random live managers until `stop`,
/// and a unique secret now and then. Returns its operations and the secrets it was told exist.
fn client(c: &Cluster, id: u64, stop: &AtomicBool, image: &str) -> (Vec<Op>, Vec<String>) {
    let mut ops = Vec::new();
    let mut secrets = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(id + 1);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let member = c.live(next());
        if seq % 7 == 0 {
            let name = format!("c{id}-s{seq}");
            let out = c.meshctl(&member, &["secret", "create", &name, "-"], Some(&name));
            if out.status.success() {
                secrets.push(name);
            }
            continue;
        }
        let key = KEYS[(next() % KEYS.len() as u64) as usize];
        let value = id * 1_000_000 + seq;
        let call = match next() % 20 {
            0..=7 => Call::Read,
            8..=11 => Call::Create(value),
            12..=16 => Call::Update(value),
            _ => Call::Remove,
        };
        let start = c.now();
        let out = run_call(c, &member, key, call, image);
        let end = c.now();
        ops.push(Op {
            key: key.to_owned(),
            call,
            start,
            end,
            answer: answer_of(call, &out),
        });
    }
    (ops, secrets)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillLeader,
    CutLink,
    Loss,
    Restart,
}

/// The nemesis: a fault every few seconds, each healed before the next. Returns the faults and
/// the times (µs on the cluster's clock) of the leader kills.
fn nemesis(c: &Cluster, stop: &AtomicBool) -> (Vec<String>, Vec<u64>) {
    let faults = [
        Fault::KillLeader,
        Fault::CutLink,
        Fault::Loss,
        Fault::Restart,
    ];
    let mut log = Vec::new();
    let mut kills = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_secs(3));
        let fault = faults[n % faults.len()];
        n += 1;
        let target = match fault {
            Fault::KillLeader => match c.leader() {
                Some(l) => l,
                None => continue,
            },
            _ => c.managers[n % c.managers.len()].clone(),
        };
        c.down.lock().unwrap().insert(target.clone());
        let at = c.now();
        match fault {
            Fault::KillLeader => {
                c.lab.meshctl_lab(&["stop", "--kill", &target]);
                kills.push(at);
                thread::sleep(Duration::from_secs(4));
                c.lab.meshctl_lab(&["start", &target]);
            }
            Fault::Restart => {
                c.lab.meshctl_lab(&["stop", &target]);
                c.lab.meshctl_lab(&["start", &target]);
            }
            Fault::CutLink => {
                c.lab.exec(&target, &["ip", "link", "set", "eth0", "down"]);
                thread::sleep(Duration::from_secs(4));
                c.lab.exec(&target, &["ip", "link", "set", "eth0", "up"]);
            }
            Fault::Loss => {
                let add = [
                    "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "loss", "30%",
                ];
                c.lab.exec(&target, &add);
                thread::sleep(Duration::from_secs(5));
                c.lab
                    .exec(&target, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
            }
        }
        // Back in raft before the next fault, so that a quorum always remains.
        let settled = Instant::now();
        while settled.elapsed() < Duration::from_secs(30) {
            let out = c.meshctl(&target, &["node", "ls"], None);
            if out.status.success() {
                break;
            }
            thread::sleep(Duration::from_millis(300));
        }
        c.down.lock().unwrap().remove(&target);
        log.push(format!("{fault:?} {target} at {} ms", at / 1000));
    }
    (log, kills)
}

/// `name -> label v` of every service, as `member` sees it.
fn services_seen_by(c: &Cluster, member: &str) -> BTreeMap<String, Option<u64>> {
    eventually(Duration::from_secs(30), "service ls", || {
        let out = c.meshctl(member, &["service", "ls", "-q"], None);
        if !out.status.success() {
            return Err(stderr(&out));
        }
        let mut seen = BTreeMap::new();
        for id in stdout(&out).split_whitespace() {
            let out = c.meshctl(member, &["service", "inspect", id], None);
            let v: serde_json::Value =
                serde_json::from_str(&stdout(&out)).map_err(|e| e.to_string())?;
            let first = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
            let name = first["Spec"]["Name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            seen.insert(name, label_v(&stdout(&out)));
        }
        Ok(seen)
    })
}

#[test]
fn chaos_histories_are_linearizable_and_nothing_acknowledged_is_lost() {
    let secs = env("MESH_CHAOS_SECS", 40);
    let managers = env("MESH_CHAOS_MANAGERS", 3) as usize;
    let lab = Lab::up("chaos", 228, managers, managers);
    let image = lab.image();
    let cluster = Arc::new(Cluster {
        managers: (1..=managers).map(|i| format!("n{i}")).collect(),
        lab,
        started: Instant::now(),
        down: Mutex::new(BTreeSet::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (c, stop, image) = (cluster.clone(), stop.clone(), image.clone());
            thread::spawn(move || client(&c, id, &stop, &image))
        })
        .collect();
    let nemesis = {
        let (c, stop) = (cluster.clone(), stop.clone());
        thread::spawn(move || nemesis(&c, &stop))
    };
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let (faults, kills) = nemesis.join().expect("the nemesis");
    let mut ops = Vec::new();
    let mut secrets = Vec::new();
    for c in clients {
        let (o, s) = c.join().expect("a client");
        ops.extend(o);
        secrets.extend(s);
    }
    let c = &*cluster;

    // Every manager's final state: the same services with the same values, every acknowledged
    // secret; and those final reads join the history.
    let first = services_seen_by(c, &c.managers[0]);
    for m in &c.managers {
        let seen = services_seen_by(c, m);
        assert_eq!(seen, first, "{m}'s services differ from n1's");
        let ls = stdout(&c.meshctl(m, &["secret", "ls"], None));
        let lost: Vec<&String> = secrets
            .iter()
            .filter(|s| !ls.contains(s.as_str()))
            .collect();
        assert!(lost.is_empty(), "{m} lost acknowledged secrets {lost:?}");
    }
    let end = c.now();
    for key in KEYS {
        ops.push(Op {
            key: key.to_owned(),
            call: Call::Read,
            start: end,
            end: end + 1,
            answer: Some(Answer::Value(first.get(key).copied().flatten())),
        });
    }

    // Acknowledged writes lost: a register whose last acknowledged write is certainly the last
    // to take effect (every other write that may have taken effect was answered before it was
    // called) but is not what the managers hold.
    let effective = |o: &Op| o.call != Call::Read && matches!(o.answer, None | Some(Answer::Done));
    let mut lost = 0;
    for key in KEYS {
        let writes: Vec<&Op> = ops
            .iter()
            .filter(|o| o.key == key && effective(o))
            .collect();
        let Some(last) = writes
            .iter()
            .filter(|o| o.answer.is_some())
            .max_by_key(|o| o.end)
        else {
            continue;
        };
        let certain = writes
            .iter()
            .all(|o| std::ptr::eq(*o, *last) || (o.answer.is_some() && o.end < last.start));
        let want = match last.call {
            Call::Create(v) | Call::Update(v) => Some(v),
            Call::Remove | Call::Read => None,
        };
        if certain && first.get(key).copied().flatten() != want {
            lost += 1;
        }
    }
    let failover_ms: Vec<u64> = kills
        .iter()
        .filter_map(|k| {
            ops.iter()
                .filter(|o| o.start >= *k && o.call != Call::Read && o.answer == Some(Answer::Done))
                .map(|o| o.end)
                .min()
                .map(|e| (e - k) / 1000)
        })
        .collect();
    let answered = ops.iter().filter(|o| o.answer.is_some()).count();
    println!(
        "chaos: {} managers, {secs} s: {} operations ({answered} answered, {} unknown), {} secrets; faults: {}; acknowledged writes lost: {lost}; leader kill -> next acknowledged write (ms): {failover_ms:?}",
        c.managers.len(),
        ops.len(),
        ops.len() - answered,
        secrets.len(),
        faults.join(", "),
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
    if let Err(e) = history::check(&ops) {
        panic!("not linearizable: {e}");
    }
    assert!(
        answered > 10,
        "too few answered operations to mean anything"
    );
}
