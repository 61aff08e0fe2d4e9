//! Crash test: a child process (this test binary re-executed with `FERRY_CRASH_DIR` set) sends,
//! receives and deletes under load with `Durability::Always`, printing every acknowledged
//! operation; the parent `SIGKILL`s it at random moments over several rounds. Afterwards:
//! - every acknowledged send is present, or was deleted (by an acknowledged delete, or by a
//!   delete in progress at the kill);
//! - nothing whose delete was acknowledged reappears;
//! - receive counts never go backwards (across crashes) and bodies are intact.

use bytes::Bytes;
use ferry_broker::*;
use rand::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a crash child may take to open (recover) its broker and say READY.
const CHILD_READY_TIMEOUT: Duration = Duration::from_secs(60);

const QUEUE: &str = "crash";
/// A second queue whose consumer deletes everything, so that its old log segments are dropped
/// (and their files recycled) while the child runs.
const DRAINED: &str = "drained";
const ROUNDS: usize = 6;

/// The child queue's visibility timeout.
const LEASE_SECONDS: u32 = 5;

fn body_for(tag: &str) -> Bytes {
    // Self-checking body: the tag followed by a pattern derived from it.
    let mut b = format!("{tag}|").into_bytes();
    let seed = tag
        .bytes()
        .fold(7u8, |a, c| a.wrapping_mul(31).wrapping_add(c));
    for i in 0..(200 + (seed as usize % 300)) {
        b.push(b'a' + ((seed as usize + i) % 26) as u8);
    }
    Bytes::from(b)
}

fn out(line: String) {
    let stdout = std::io::stdout();
    let mut l = stdout.lock();
    let _ = writeln!(l, "{line}");
    let _ = l.flush();
}

/// The child's workload. Runs only when re-executed by `crash_survives_sigkill`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("FERRY_CRASH_DIR") else {
        return;
    };
    let round: usize = std::env::var("FERRY_CRASH_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Small segments, so that maintenance drops the drained queue's segments (and its log
        // recycles them) while the child runs, and kills land around those steps too.
        let mut config = BrokerConfig::new(&dir);
        config.segment_bytes = 256 * 1024;
        let b = Broker::open(config).unwrap();
        // Long enough that a delete is never later than its lease even on a loaded machine (a
        // late delete is a no-op under SQS semantics, which this test would misread as a
        // reappearing message), short enough that undeleted messages come back across rounds.
        let attrs = QueueAttributes {
            visibility_timeout_seconds: LEASE_SECONDS,
            ..Default::default()
        };
        b.create_queue(QUEUE, attrs.clone(), BTreeMap::new())
            .unwrap();
        b.create_queue(DRAINED, attrs, BTreeMap::new()).unwrap();
        out("READY".into());
        let mut tasks = Vec::new();
        for (p, queue) in [(0, QUEUE), (1, QUEUE), (2, DRAINED)] {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let tags: Vec<String> =
                        (0..5).map(|k| format!("r{round}p{p}i{i}k{k}")).collect();
                    let msgs = tags
                        .iter()
                        .map(|t| SendMessage {
                            body: body_for(t),
                            ..Default::default()
                        })
                        .collect();
                    let res = b.send(queue, msgs).await.unwrap();
                    for (t, r) in tags.iter().zip(res) {
                        out(format!("SENT {} {t}", r.unwrap().message_id));
                    }
                }
            }));
        }
        // Two consumers of QUEUE delete two messages in three (the rest come back after their
        // lease); the consumer of DRAINED deletes every one.
        for (queue, keep_every) in [(QUEUE, 3), (QUEUE, 3), (DRAINED, u64::MAX)] {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let got = b
                        .receive(
                            queue,
                            ReceiveRequest {
                                max_messages: 10,
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap();
                    let mut del = Vec::new();
                    let mut ids = Vec::new();
                    for r in got {
                        out(format!(
                            "RECV {} {}",
                            r.message.message_id, r.message.receive_count
                        ));
                        n += 1;
                        if !n.is_multiple_of(keep_every) {
                            del.push(r.receipt_handle);
                            ids.push(r.message.message_id);
                        }
                    }
                    if !del.is_empty() {
                        for id in &ids {
                            out(format!("DELREQ {id}"));
                        }
                        let res = b.delete_messages(queue, del).await.unwrap();
                        for (id, r) in ids.iter().zip(res) {
                            r.unwrap();
                            out(format!("DEL {id}"));
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn crash_survives_sigkill() {
    if std::env::var("FERRY_CRASH_DIR").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut sent: HashMap<String, String> = HashMap::new();
    let mut deleted: HashSet<String> = HashSet::new();
    // Deletes requested but not acknowledged before the kill: they may or may not have happened.
    let mut maybe_deleted: HashSet<String> = HashSet::new();
    let mut max_rc: HashMap<String, u32> = HashMap::new();
    let mut rng = rand::thread_rng();
    let mut history: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("FERRY_CRASH_DIR", dir.path())
            .env("FERRY_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if l.ends_with("READY") {
                            let _ = ready_tx.send(());
                        }
                        lines.push(l)
                    }
                    Err(_) => break,
                }
            }
            lines
        });
        // Kill at a random moment once the child is up: after it has recovered and said
        // READY (however long recovery takes on a loaded machine), within its load.
        let ready = ready_rx.recv_timeout(CHILD_READY_TIMEOUT).is_ok();
        if ready {
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..1200)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        history.push(format!("ROUND {round}"));
        history.extend(lines.iter().cloned());
        assert!(
            lines.iter().any(|l| l.ends_with("READY")),
            "round {round}: child never got ready"
        );
        let mut seen_this_round: HashSet<String> = HashSet::new();
        for l in &lines {
            let parts: Vec<&str> = l.split(' ').collect();
            match parts.as_slice() {
                ["SENT", id, tag] => {
                    sent.insert(id.to_string(), tag.to_string());
                }
                ["RECV", id, rc] => {
                    let Ok(rc) = rc.parse::<u32>() else { continue }; // torn last line
                    let prev = max_rc.get(*id).copied().unwrap_or(0);
                    if !seen_this_round.contains(*id) {
                        // First delivery of this message in this process: its count must be
                        // above everything acknowledged before the crash.
                        assert!(
                            rc > prev,
                            "round {round}: {id} delivered with count {rc} after {prev}"
                        );
                        seen_this_round.insert(id.to_string());
                    }
                    assert!(
                        !deleted.contains(*id),
                        "round {round}: deleted message {id} delivered again"
                    );
                    max_rc.insert(id.to_string(), prev.max(rc));
                }
                ["DELREQ", id] => {
                    maybe_deleted.insert(id.to_string());
                }
                ["DEL", id] => {
                    deleted.insert(id.to_string());
                }
                _ => {}
            }
        }
    }
    assert!(
        sent.len() > 50,
        "the child acknowledged too few sends ({})",
        sent.len()
    );
    // Final check: reopen, let leases lapse, drain everything.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        tokio::time::sleep(Duration::from_millis(LEASE_SECONDS as u64 * 1000 + 100)).await;
        let mut present: HashMap<String, u32> = HashMap::new();
        for queue in [QUEUE, DRAINED] {
            loop {
                let got = b
                    .receive(
                        queue,
                        ReceiveRequest {
                            max_messages: 1000,
                            visibility_timeout_seconds: Some(600),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                for r in got {
                    let id = r.message.message_id.clone();
                    assert!(
                        !deleted.contains(&id),
                        "acknowledged-deleted message {id} reappeared"
                    );
                    if let Some(tag) = sent.get(&id) {
                        assert_eq!(r.message.body, body_for(tag), "body of {id} corrupted");
                    }
                    let prev = max_rc.get(&id).copied().unwrap_or(0);
                    assert!(
                        r.message.receive_count > prev,
                        "{id}: receive count {} after {prev}",
                        r.message.receive_count
                    );
                    assert!(
                        present.insert(id, r.message.receive_count).is_none(),
                        "message delivered twice in the drain"
                    );
                }
            }
        }
        let stats = b.get_queue(QUEUE).unwrap().stats;
        assert_eq!(stats.visible + stats.delayed, 0);
        let drained = b.get_queue(DRAINED).unwrap().stats;
        assert_eq!(drained.visible + drained.delayed, 0);
        let lost: Vec<&String> = sent
            .keys()
            .filter(|id| {
                !deleted.contains(*id) && !maybe_deleted.contains(*id) && !present.contains_key(*id)
            })
            .collect();
        if let Some(id) = lost.first() {
            let hist: Vec<&String> = history.iter().filter(|l| l.contains(id.as_str())).collect();
            panic!(
                "{} acknowledged sends lost (of {}), e.g. {id} ({}): {hist:?}; stats {stats:?}",
                lost.len(),
                sent.len(),
                sent[*id]
            );
        }
        b.shutdown().await.unwrap();
    });
}
