//! Deterministic-schedule simulation: seeded random sequences of sends, receives, deletes,
//! visibility changes, clock jumps, checkpoints and crashes (drop without shutdown, reopen on
//! the same directory), checked against a model of what the broker acknowledged.
//!
//! Invariants checked after every step and at the end:
//! - every acknowledged send is delivered eventually or was deleted by an acknowledged delete
//!   with its current handle (nothing acknowledged is lost, across crashes);
//! - a message deleted with its current handle while its lease ran never reappears;
//! - receive counts of a message only grow, by one per delivery;
//! - a message is never delivered while a lease the model knows of is running (leases survive
//!   crashes);
//! - bodies come back intact; FIFO duplicates return the original id within the window;
//! - FIFO: first deliveries within a group follow send order, and a group with a message in
//!   flight delivers nothing else;
//! - a message past the redrive policy's receive count shows up in the dead-letter queue.

use bytes::Bytes;
use ferry_broker::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;
const VIS_MS: u64 = 20_000;
const MAX_RC: u32 = 3;
const QUEUES: [&str; 4] = ["s", "f.fifo", "dl", "dl.fifo"];

#[derive(Debug, Clone)]
struct ModelMsg {
    body: Vec<u8>,
    group: Option<String>,
    seq: u64,
    /// Highest receive count seen.
    rc: u32,
    /// Lease known to the model: no delivery before this time.
    leased_until: u64,
    /// Handle of the latest delivery.
    handle: Option<String>,
    /// Deleted for sure (current handle, lease running).
    deleted: bool,
    /// Deleted with the current handle after the lease ended (deleted, or moved before).
    maybe_deleted: bool,
    /// Queue it was last delivered from.
    queue: String,
    first_delivered: bool,
}

struct Model {
    msgs: HashMap<String, ModelMsg>,
    /// FIFO dedup: id -> (message id, sent at).
    dedup: HashMap<String, (String, u64)>,
    /// Per FIFO group: highest sequence number first-delivered.
    group_first: HashMap<String, u64>,
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.clock = clock.clone();
    c.default_durability = ferry_log::Durability::Never;
    c.segment_bytes = 16 * 1024;
    Broker::open(c).unwrap()
}

fn create(b: &Broker) {
    let vis = (VIS_MS / 1000) as u32;
    b.create_queue(
        "dl",
        QueueAttributes {
            visibility_timeout_seconds: vis,
            ..Default::default()
        },
        BTreeMap::new(),
    )
    .unwrap();
    b.create_queue(
        "dl.fifo",
        QueueAttributes {
            fifo: true,
            visibility_timeout_seconds: vis,
            ..Default::default()
        },
        BTreeMap::new(),
    )
    .unwrap();
    let red = |d: &str| {
        Some(RedrivePolicy {
            dead_letter_queue: d.into(),
            max_receive_count: MAX_RC,
        })
    };
    b.create_queue(
        "s",
        QueueAttributes {
            visibility_timeout_seconds: (VIS_MS / 1000) as u32,
            redrive_policy: red("dl"),
            ..Default::default()
        },
        BTreeMap::new(),
    )
    .unwrap();
    b.create_queue(
        "f.fifo",
        QueueAttributes {
            fifo: true,
            visibility_timeout_seconds: (VIS_MS / 1000) as u32,
            redrive_policy: red("dl.fifo"),
            ..Default::default()
        },
        BTreeMap::new(),
    )
    .unwrap();
}

fn check_delivery(
    model: &mut Model,
    q: &str,
    r: &ReceivedMessage,
    now: u64,
    inflight_groups: &mut HashSet<String>,
) {
    let id = &r.message.message_id;
    let m = model
        .msgs
        .get_mut(id)
        .unwrap_or_else(|| panic!("unknown message {id} delivered from {q}"));
    assert!(
        !m.deleted,
        "message {id} deleted with its current handle came back from {q}"
    );
    assert_eq!(r.message.body.to_vec(), m.body, "body of {id}");
    assert!(
        now >= m.leased_until,
        "{q}: message {id} delivered at {now} during a lease until {}",
        m.leased_until
    );
    assert!(
        r.message.receive_count == m.rc + 1,
        "receive count of {id}: was {}, now {} (from {q})",
        m.rc,
        r.message.receive_count
    );
    if q.starts_with("dl") {
        assert!(
            m.rc >= MAX_RC,
            "message {id} dead-lettered after only {} receives",
            m.rc
        );
        assert_eq!(
            r.message.dead_letter_source.as_deref(),
            Some(if q == "dl" { "s" } else { "f.fifo" })
        );
    }
    if q == "f.fifo" {
        let g = m.group.clone().unwrap();
        if !m.first_delivered {
            let last = model.group_first.entry(g.clone()).or_insert(0);
            assert!(
                m.seq > *last,
                "group {g}: first delivery of seq {} after {}",
                m.seq,
                *last
            );
            *last = m.seq;
        }
        inflight_groups.insert(g);
    }
    m.rc = r.message.receive_count;
    m.handle = Some(r.receipt_handle.clone());
    m.queue = q.to_string();
    m.first_delivered = true;
    m.maybe_deleted = false;
}

async fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut b = open(dir.path(), &clock);
    create(&b);
    let mut model = Model {
        msgs: HashMap::new(),
        dedup: HashMap::new(),
        group_first: HashMap::new(),
    };
    let mut counter = 0u64;
    let steps = 250;
    for _step in 0..steps {
        let now = clock.now_ms();
        match rng.gen_range(0..100) {
            0..=29 => {
                let fifo = rng.gen_bool(0.4);
                let q = if fifo { "f.fifo" } else { "s" };
                let n = rng.gen_range(1..=3);
                let mut batch = Vec::new();
                for _ in 0..n {
                    counter += 1;
                    let body = format!(
                        "seed{seed}-m{counter}-{}",
                        "x".repeat(rng.gen_range(0..300))
                    )
                    .into_bytes();
                    let mut m = SendMessage {
                        body: Bytes::from(body),
                        ..Default::default()
                    };
                    if fifo {
                        m.group_id = Some(format!("g{}", rng.gen_range(0..3)));
                        m.deduplication_id = Some(format!("d{}", rng.gen_range(0..40)));
                    }
                    batch.push(m);
                }
                let res = b.send(q, batch.clone()).await.unwrap();
                for (m, r) in batch.into_iter().zip(res) {
                    let r = r.unwrap();
                    if fifo {
                        let d = m.deduplication_id.clone().unwrap();
                        match model.dedup.get(&d) {
                            Some((id, at)) if now < at + 5 * 60 * 1000 => {
                                assert!(r.deduplicated, "seed {seed}: duplicate {d} not detected");
                                assert_eq!(&r.message_id, id);
                                continue;
                            }
                            _ => {
                                assert!(
                                    !r.deduplicated,
                                    "seed {seed}: {d} deduplicated outside the window"
                                );
                                model.dedup.insert(d, (r.message_id.clone(), now));
                            }
                        }
                    }
                    model.msgs.insert(
                        r.message_id.clone(),
                        ModelMsg {
                            body: m.body.to_vec(),
                            group: m.group_id.clone(),
                            seq: r.sequence_number.unwrap_or(0),
                            rc: 0,
                            leased_until: 0,
                            handle: None,
                            deleted: false,
                            maybe_deleted: false,
                            queue: q.to_string(),
                            first_delivered: false,
                        },
                    );
                }
            }
            30..=59 => {
                let q = QUEUES[rng.gen_range(0..QUEUES.len())];
                let max = rng.gen_range(1..=5);
                let got = b
                    .receive(
                        q,
                        ReceiveRequest {
                            max_messages: max,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                assert!(got.len() <= max as usize);
                let mut groups = HashSet::new();
                if q == "f.fifo" {
                    // A group with a message in flight (per the model) must not deliver.
                    for r in &got {
                        let g = model.msgs[&r.message.message_id].group.clone().unwrap();
                        for (id, m) in &model.msgs {
                            if m.group.as_ref() == Some(&g)
                                && m.queue == "f.fifo"
                                && !m.deleted
                                && m.leased_until > now
                                && !got.iter().any(|x| &x.message.message_id == id)
                            {
                                panic!(
                                    "seed {seed}: group {g} delivered {} while {id} is in flight",
                                    r.message.message_id
                                );
                            }
                        }
                    }
                }
                for r in &got {
                    check_delivery(&mut model, q, r, now, &mut groups);
                    if let Some(m) = model.msgs.get_mut(&r.message.message_id) {
                        m.leased_until = now + VIS_MS;
                    }
                }
            }
            60..=74 => {
                // Delete some known handles (current or stale).
                let ids: Vec<String> = model
                    .msgs
                    .iter()
                    .filter(|(_, m)| m.handle.is_some() && !m.deleted)
                    .map(|(k, _)| k.clone())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let id = ids[rng.gen_range(0..ids.len())].clone();
                let m = model.msgs[&id].clone();
                let res = b
                    .delete_messages(&m.queue, vec![m.handle.clone().unwrap()])
                    .await
                    .unwrap();
                res[0].clone().unwrap();
                let mm = model.msgs.get_mut(&id).unwrap();
                if m.leased_until > now {
                    mm.deleted = true;
                } else {
                    mm.maybe_deleted = true;
                }
            }
            75..=82 => {
                let ids: Vec<String> = model
                    .msgs
                    .iter()
                    .filter(|(_, m)| m.handle.is_some() && !m.deleted)
                    .map(|(k, _)| k.clone())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let id = ids[rng.gen_range(0..ids.len())].clone();
                let m = model.msgs[&id].clone();
                let secs = if rng.gen_bool(0.5) {
                    0
                } else {
                    rng.gen_range(1..60)
                };
                let res = b
                    .change_visibility(
                        &m.queue,
                        vec![VisibilityChange {
                            receipt_handle: m.handle.clone().unwrap(),
                            visibility_timeout_seconds: secs,
                        }],
                    )
                    .await
                    .unwrap();
                let leased = m.leased_until > now;
                match &res[0] {
                    Ok(()) => {
                        assert!(
                            leased,
                            "seed {seed}: visibility change accepted for {id} outside its lease"
                        );
                        model.msgs.get_mut(&id).unwrap().leased_until = now + secs as u64 * 1000;
                    }
                    Err(BrokerError::MessageNotInflight) => {
                        assert!(
                            !leased,
                            "seed {seed}: visibility change refused for {id} during its lease"
                        );
                    }
                    Err(e) => panic!("seed {seed}: {e}"),
                }
            }
            83..=92 => clock.advance(rng.gen_range(0..(VIS_MS + 5_000))),
            93 => b.run_maintenance().await,
            94..=95 => b.checkpoint_all().unwrap(),
            _ => {
                // Crash: drop without shutdown, reopen.
                drop(b);
                b = open(dir.path(), &clock);
            }
        }
    }
    // Drain: every message not deleted must come out of its queue or its dead-letter queue.
    clock.advance(VIS_MS + 1);
    for _ in 0..(MAX_RC + 3) {
        for q in QUEUES {
            loop {
                let now = clock.now_ms();
                let got = b
                    .receive(
                        q,
                        ReceiveRequest {
                            max_messages: 10,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                let mut groups = HashSet::new();
                let mut hs = Vec::new();
                for r in &got {
                    check_delivery(&mut model, q, r, now, &mut groups);
                    hs.push(r.receipt_handle.clone());
                    let m = model.msgs.get_mut(&r.message.message_id).unwrap();
                    m.leased_until = now + VIS_MS;
                }
                // Redeliver until dead-lettered, to exercise the whole path; delete from DLQs.
                if q.starts_with("dl") {
                    for r in &got {
                        model.msgs.get_mut(&r.message.message_id).unwrap().deleted = true;
                    }
                    b.delete_messages(q, hs).await.unwrap();
                } else {
                    for r in &got {
                        let m = model.msgs.get_mut(&r.message.message_id).unwrap();
                        m.deleted = true;
                    }
                    b.delete_messages(q, hs).await.unwrap();
                }
            }
        }
        clock.advance(VIS_MS + 1);
    }
    let lost: Vec<&String> = model
        .msgs
        .iter()
        .filter(|(_, m)| !m.deleted && !m.maybe_deleted)
        .map(|(k, _)| k)
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged messages lost: {lost:?}"
    );
    for q in QUEUES {
        let s = b.get_queue(q).unwrap().stats;
        assert_eq!(
            (s.visible, s.in_flight, s.delayed),
            (0, 0, 0),
            "seed {seed}: {q} not empty: {s:?}"
        );
    }
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_many_seeds() {
    let seeds: u64 = std::env::var("FERRY_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let base: u64 = std::env::var("FERRY_SIM_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in base..base + seeds {
        run(seed).await;
    }
}
