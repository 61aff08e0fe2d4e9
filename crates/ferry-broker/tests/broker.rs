//! Behaviour of every Broker operation and error, through the public API.

use bytes::Bytes;
use ferry_broker::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;

fn open(dir: &Path, clock: &Arc<ManualClock>) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.clock = clock.clone();
    Broker::open(c).unwrap()
}

fn setup() -> (tempfile::TempDir, Arc<ManualClock>, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let b = open(dir.path(), &clock);
    (dir, clock, b)
}

fn msg(body: &str) -> SendMessage {
    SendMessage {
        body: Bytes::from(body.to_string()),
        ..Default::default()
    }
}

fn fmsg(body: &str, group: &str, dedup: &str) -> SendMessage {
    SendMessage {
        body: Bytes::from(body.to_string()),
        group_id: Some(group.into()),
        deduplication_id: Some(dedup.into()),
        ..Default::default()
    }
}

fn rr(max: u32) -> ReceiveRequest {
    ReceiveRequest {
        max_messages: max,
        ..Default::default()
    }
}

fn fifo_attrs() -> QueueAttributes {
    QueueAttributes {
        fifo: true,
        ..Default::default()
    }
}

/// A queue with a 1 s visibility timeout whose messages move to `dlq` after
/// `max_receive_count` receives.
fn redrive_to(dlq: &str, max_receive_count: u32) -> QueueAttributes {
    QueueAttributes {
        visibility_timeout_seconds: 1,
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: dlq.into(),
            max_receive_count,
        }),
        ..Default::default()
    }
}

async fn send1(b: &Broker, q: &str, m: SendMessage) -> SendOutcome {
    b.send(q, vec![m]).await.unwrap().pop().unwrap().unwrap()
}

async fn bodies(b: &Broker, q: &str, max: u32) -> Vec<(String, String)> {
    b.receive(q, rr(max))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.message.body.to_vec()).unwrap(),
                r.receipt_handle,
            )
        })
        .collect()
}

#[tokio::test]
async fn create_get_list_delete() {
    let (_d, _c, b) = setup();
    let info = b
        .create_queue("orders", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    assert_eq!(info.name, "orders");
    assert_eq!(info.created_timestamp_ms, T0);
    // Idempotent with equal attributes; refused with different ones.
    b.create_queue("orders", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let other = QueueAttributes {
        delay_seconds: 5,
        ..Default::default()
    };
    assert_eq!(
        b.create_queue("orders", other, BTreeMap::new()),
        Err(BrokerError::QueueAlreadyExists("orders".into()))
    );
    b.create_queue("audit", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    assert_eq!(b.list_queues(None), vec!["audit", "orders"]);
    assert_eq!(b.list_queues(Some("or")), vec!["orders"]);
    b.delete_queue("orders").unwrap();
    assert_eq!(
        b.get_queue("orders"),
        Err(BrokerError::QueueNotFound("orders".into()))
    );
    assert_eq!(
        b.delete_queue("orders"),
        Err(BrokerError::QueueNotFound("orders".into()))
    );
    assert!(matches!(
        b.send("orders", vec![msg("x")]).await,
        Err(BrokerError::QueueNotFound(_))
    ));
}

#[tokio::test]
async fn invalid_names_and_attributes() {
    let (_d, _c, b) = setup();
    assert!(matches!(
        b.create_queue("bad name", QueueAttributes::default(), BTreeMap::new()),
        Err(BrokerError::InvalidQueueName { .. })
    ));
    assert!(matches!(
        b.create_queue("x.fifo", QueueAttributes::default(), BTreeMap::new()),
        Err(BrokerError::InvalidQueueName { .. })
    ));
    assert!(matches!(
        b.create_queue("x", fifo_attrs(), BTreeMap::new()),
        Err(BrokerError::InvalidQueueName { .. })
    ));
    let a = QueueAttributes {
        visibility_timeout_seconds: 50_000,
        ..Default::default()
    };
    assert!(
        matches!(b.create_queue("x", a, BTreeMap::new()), Err(BrokerError::InvalidAttributeValue { attribute, .. }) if attribute == "VisibilityTimeout")
    );
    // Redrive to a missing queue, to itself, to the wrong kind.
    let red = |dlq: &str| QueueAttributes {
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: dlq.into(),
            max_receive_count: 3,
        }),
        ..Default::default()
    };
    assert!(matches!(
        b.create_queue("x", red("nope"), BTreeMap::new()),
        Err(BrokerError::InvalidAttributeValue { .. })
    ));
    assert!(matches!(
        b.create_queue("x", red("x"), BTreeMap::new()),
        Err(BrokerError::InvalidAttributeValue { .. })
    ));
    b.create_queue("d.fifo", fifo_attrs(), BTreeMap::new())
        .unwrap();
    assert!(matches!(
        b.create_queue("x", red("d.fifo"), BTreeMap::new()),
        Err(BrokerError::InvalidAttributeValue { .. })
    ));
    // Redrive allow policy.
    let deny = QueueAttributes {
        redrive_allow_policy: Some(RedriveAllowPolicy::DenyAll),
        ..Default::default()
    };
    b.create_queue("dl", deny, BTreeMap::new()).unwrap();
    assert_eq!(
        b.create_queue("x", red("dl"), BTreeMap::new()),
        Err(BrokerError::RedriveNotAllowed("dl".into()))
    );
    let by = QueueAttributes {
        redrive_allow_policy: Some(RedriveAllowPolicy::ByQueue(vec!["x".into()])),
        ..Default::default()
    };
    b.create_queue("dl2", by, BTreeMap::new()).unwrap();
    b.create_queue("x", red("dl2"), BTreeMap::new()).unwrap();
    assert!(matches!(
        b.create_queue("y", red("dl2"), BTreeMap::new()),
        Err(BrokerError::RedriveNotAllowed(_))
    ));
    assert_eq!(b.dead_letter_source_queues("dl2").unwrap(), vec!["x"]);
    // FIFO flag cannot change.
    assert!(matches!(
        b.update_queue_attributes("x", |a| a.fifo = true),
        Err(BrokerError::InvalidAttributeValue { .. })
    ));
    let info = b
        .update_queue_attributes("x", |a| a.visibility_timeout_seconds = 5)
        .unwrap();
    assert_eq!(info.attributes.visibility_timeout_seconds, 5);
    assert!(matches!(
        b.update_queue_attributes("x", |a| a.delay_seconds = 1000),
        Err(BrokerError::InvalidAttributeValue { .. })
    ));
}

#[tokio::test]
async fn tags() {
    let (_d, _c, b) = setup();
    let mut t = BTreeMap::new();
    t.insert("team".to_string(), "a".to_string());
    b.create_queue("q", QueueAttributes::default(), t).unwrap();
    let mut more = BTreeMap::new();
    more.insert("env".to_string(), "prod".to_string());
    b.tag_queue("q", more).unwrap();
    assert_eq!(b.get_queue("q").unwrap().tags.len(), 2);
    b.untag_queue("q", &["team".to_string()]).unwrap();
    assert_eq!(
        b.get_queue("q").unwrap().tags.keys().collect::<Vec<_>>(),
        vec!["env"]
    );
}

#[tokio::test]
async fn send_receive_delete_roundtrip() {
    let (_d, _c, b) = setup();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let mut m = msg("hello");
    m.attributes.insert(
        "k".into(),
        MessageAttributeValue {
            data_type: "String".into(),
            string_value: Some("v".into()),
            binary_value: None,
        },
    );
    m.sender_id = Some("me".into());
    let out = send1(&b, "q", m).await;
    assert_eq!(out.message_id.len(), 36);
    assert!(!out.deduplicated);
    let got = b.receive("q", rr(10)).await.unwrap();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.message.message_id, out.message_id);
    assert_eq!(&r.message.body[..], b"hello");
    assert_eq!(r.message.attributes["k"].string_value.as_deref(), Some("v"));
    assert_eq!(r.message.receive_count, 1);
    assert_eq!(r.message.sent_timestamp_ms, T0);
    assert_eq!(r.message.first_receive_timestamp_ms, T0);
    assert_eq!(r.message.sender_id.as_deref(), Some("me"));
    // In flight: not delivered again.
    assert!(b.receive("q", rr(10)).await.unwrap().is_empty());
    let s = b.get_queue("q").unwrap().stats;
    assert_eq!((s.visible, s.in_flight), (0, 1));
    b.delete_messages("q", vec![r.receipt_handle.clone()])
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    let s = b.get_queue("q").unwrap().stats;
    assert_eq!(
        (
            s.visible,
            s.in_flight,
            s.sent_total,
            s.received_total,
            s.deleted_total
        ),
        (0, 0, 1, 1, 1)
    );
    // Deleting again: stale, still Ok.
    b.delete_messages("q", vec![r.receipt_handle.clone()])
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn errors_per_entry() {
    let (_d, _c, b) = setup();
    let a = QueueAttributes {
        maximum_message_size: 1024,
        ..Default::default()
    };
    b.create_queue("q", a, BTreeMap::new()).unwrap();
    let big = SendMessage {
        body: Bytes::from(vec![b'x'; 1025]),
        ..Default::default()
    };
    let res = b.send("q", vec![msg("ok"), big, msg("ok2")]).await.unwrap();
    assert!(res[0].is_ok() && res[2].is_ok());
    assert_eq!(
        res[1],
        Err(BrokerError::MessageTooLarge {
            size: 1025,
            max: 1024
        })
    );
    // The rejected entry left no trace.
    assert_eq!(b.get_queue("q").unwrap().stats.visible, 2);
    let res = b
        .delete_messages("q", vec!["garbage".into()])
        .await
        .unwrap();
    assert!(matches!(res[0], Err(BrokerError::InvalidReceiptHandle(_))));
    let res = b
        .change_visibility(
            "q",
            vec![VisibilityChange {
                receipt_handle: "garbage".into(),
                visibility_timeout_seconds: 1,
            }],
        )
        .await
        .unwrap();
    assert!(matches!(res[0], Err(BrokerError::InvalidReceiptHandle(_))));
    assert!(matches!(
        b.receive("q", rr(0)).await,
        Err(BrokerError::InvalidParameter { .. })
    ));
    assert!(matches!(
        b.receive("q", rr(1001)).await,
        Err(BrokerError::InvalidParameter { .. })
    ));
    let long = ReceiveRequest {
        max_messages: 1,
        wait_seconds: Some(21),
        ..Default::default()
    };
    assert!(matches!(
        b.receive("q", long).await,
        Err(BrokerError::InvalidParameter { .. })
    ));
    // A handle of another queue is invalid here.
    b.create_queue("other", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    send1(&b, "other", msg("x")).await;
    let h = b
        .receive("other", rr(1))
        .await
        .unwrap()
        .pop()
        .unwrap()
        .receipt_handle;
    assert!(matches!(
        b.delete_messages("q", vec![h]).await.unwrap()[0],
        Err(BrokerError::InvalidReceiptHandle(_))
    ));
}

#[tokio::test]
async fn visibility_timeout_redelivery_and_stale_handles() {
    let (_d, clock, b) = setup();
    let a = QueueAttributes {
        visibility_timeout_seconds: 10,
        ..Default::default()
    };
    b.create_queue("q", a, BTreeMap::new()).unwrap();
    send1(&b, "q", msg("m")).await;
    let first = b.receive("q", rr(1)).await.unwrap().pop().unwrap();
    clock.advance(9_999);
    assert!(b.receive("q", rr(1)).await.unwrap().is_empty());
    clock.advance(1);
    let second = b.receive("q", rr(1)).await.unwrap().pop().unwrap();
    assert_eq!(second.message.receive_count, 2);
    assert_eq!(second.message.first_receive_timestamp_ms, T0);
    // The first handle is stale: visibility change refused, delete does nothing.
    let res = b
        .change_visibility(
            "q",
            vec![VisibilityChange {
                receipt_handle: first.receipt_handle.clone(),
                visibility_timeout_seconds: 0,
            }],
        )
        .await
        .unwrap();
    assert_eq!(res[0], Err(BrokerError::MessageNotInflight));
    b.delete_messages("q", vec![first.receipt_handle])
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(b.get_queue("q").unwrap().stats.in_flight, 1);
    // Visibility 0 makes it visible at once.
    let res = b
        .change_visibility(
            "q",
            vec![VisibilityChange {
                receipt_handle: second.receipt_handle.clone(),
                visibility_timeout_seconds: 0,
            }],
        )
        .await
        .unwrap();
    res[0].clone().unwrap();
    let third = b.receive("q", rr(1)).await.unwrap().pop().unwrap();
    assert_eq!(third.message.receive_count, 3);
    // Extending works and holds.
    b.change_visibility(
        "q",
        vec![VisibilityChange {
            receipt_handle: third.receipt_handle.clone(),
            visibility_timeout_seconds: 100,
        }],
    )
    .await
    .unwrap()[0]
        .clone()
        .unwrap();
    clock.advance(50_000);
    assert!(b.receive("q", rr(1)).await.unwrap().is_empty());
    // After the lease ends the latest handle can no longer change visibility but still deletes.
    clock.advance(50_001);
    let res = b
        .change_visibility(
            "q",
            vec![VisibilityChange {
                receipt_handle: third.receipt_handle.clone(),
                visibility_timeout_seconds: 5,
            }],
        )
        .await
        .unwrap();
    assert_eq!(res[0], Err(BrokerError::MessageNotInflight));
    b.delete_messages("q", vec![third.receipt_handle])
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    assert!(b.receive("q", rr(1)).await.unwrap().is_empty());
    assert_eq!(b.get_queue("q").unwrap().stats.deleted_total, 1);
    // Receive with an explicit visibility timeout.
    send1(&b, "q", msg("n")).await;
    let req = ReceiveRequest {
        max_messages: 1,
        visibility_timeout_seconds: Some(0),
        ..Default::default()
    };
    assert_eq!(b.receive("q", req.clone()).await.unwrap().len(), 1);
    assert_eq!(
        b.receive("q", req).await.unwrap()[0].message.receive_count,
        2
    );
}

#[tokio::test]
async fn delays() {
    let (_d, clock, b) = setup();
    let a = QueueAttributes {
        delay_seconds: 5,
        ..Default::default()
    };
    b.create_queue("q", a, BTreeMap::new()).unwrap();
    send1(&b, "q", msg("queue-delay")).await;
    let mut m = msg("own-delay");
    m.delay_seconds = Some(0);
    send1(&b, "q", m).await;
    assert_eq!(
        bodies(&b, "q", 10)
            .await
            .iter()
            .map(|x| x.0.clone())
            .collect::<Vec<_>>(),
        vec!["own-delay"]
    );
    assert_eq!(b.get_queue("q").unwrap().stats.delayed, 1);
    clock.advance(5_000);
    assert_eq!(bodies(&b, "q", 10).await[0].0, "queue-delay");
    let mut bad = msg("x");
    bad.delay_seconds = Some(901);
    assert!(matches!(
        b.send("q", vec![bad]).await.unwrap()[0],
        Err(BrokerError::InvalidParameter { .. })
    ));
}

#[tokio::test]
async fn priorities_then_fifo_order() {
    let (_d, _c, b) = setup();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    for (body, p) in [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0)] {
        let mut m = msg(body);
        m.priority = Some(p);
        send1(&b, "q", m).await;
    }
    let peeked: Vec<String> = b
        .peek("q", 10)
        .unwrap()
        .into_iter()
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect();
    assert_eq!(peeked, vec!["c", "b", "d", "a", "e"]);
    // Peek changed nothing.
    assert_eq!(b.get_queue("q").unwrap().stats.visible, 5);
    let got: Vec<String> = bodies(&b, "q", 10).await.into_iter().map(|x| x.0).collect();
    assert_eq!(got, vec!["c", "b", "d", "a", "e"]);
    let mut bad = msg("x");
    bad.priority = Some(10);
    assert!(matches!(
        b.send("q", vec![bad]).await.unwrap()[0],
        Err(BrokerError::InvalidParameter { .. })
    ));
}

#[tokio::test]
async fn fifo_groups_dedup_and_sequence() {
    let (_d, clock, b) = setup();
    b.create_queue("f.fifo", fifo_attrs(), BTreeMap::new())
        .unwrap();
    let s1 = send1(&b, "f.fifo", fmsg("a1", "a", "1")).await;
    let s2 = send1(&b, "f.fifo", fmsg("a2", "a", "2")).await;
    send1(&b, "f.fifo", fmsg("b1", "b", "3")).await;
    assert!(s2.sequence_number > s1.sequence_number);
    // Duplicate: original id, nothing appended.
    let dup = send1(&b, "f.fifo", fmsg("other body", "a", "1")).await;
    assert!(dup.deduplicated);
    assert_eq!(dup.message_id, s1.message_id);
    assert_eq!(dup.sequence_number, s1.sequence_number);
    assert_eq!(b.get_queue("f.fifo").unwrap().stats.visible, 3);
    // One receive of 1: a1. Group a is blocked; next receive gets b1.
    let r1 = bodies(&b, "f.fifo", 1).await;
    assert_eq!(r1[0].0, "a1");
    let r2 = bodies(&b, "f.fifo", 10).await;
    assert_eq!(
        r2.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        vec!["b1"]
    );
    assert!(bodies(&b, "f.fifo", 10).await.is_empty());
    b.delete_messages("f.fifo", vec![r1[0].1.clone()])
        .await
        .unwrap();
    assert_eq!(bodies(&b, "f.fifo", 10).await[0].0, "a2");
    // Dedup window: 5 minutes.
    clock.advance(5 * 60 * 1000);
    let again = send1(&b, "f.fifo", fmsg("a1", "a", "1")).await;
    assert!(!again.deduplicated);
    // Validation.
    let res = b.send("f.fifo", vec![msg("no group")]).await.unwrap();
    assert!(
        matches!(&res[0], Err(BrokerError::InvalidParameter { parameter, .. }) if parameter == "MessageGroupId")
    );
    let mut delayed = fmsg("x", "a", "9");
    delayed.delay_seconds = Some(1);
    assert!(
        matches!(&b.send("f.fifo", vec![delayed]).await.unwrap()[0], Err(BrokerError::InvalidParameter { parameter, .. }) if parameter == "DelaySeconds")
    );
    let mut nodedup = fmsg("x", "a", "9");
    nodedup.deduplication_id = None;
    assert!(
        matches!(&b.send("f.fifo", vec![nodedup]).await.unwrap()[0], Err(BrokerError::InvalidParameter { parameter, .. }) if parameter == "MessageDeduplicationId")
    );
}

#[tokio::test]
async fn fifo_content_dedup_scope_and_attempt_ids() {
    let (_d, _c, b) = setup();
    let a = QueueAttributes {
        fifo: true,
        content_based_deduplication: true,
        deduplication_scope: DeduplicationScope::MessageGroup,
        fifo_throughput_limit: FifoThroughputLimit::PerMessageGroupId,
        ..Default::default()
    };
    b.create_queue("c.fifo", a, BTreeMap::new()).unwrap();
    let mk = |body: &str, g: &str| SendMessage {
        body: Bytes::from(body.to_string()),
        group_id: Some(g.into()),
        ..Default::default()
    };
    let x = send1(&b, "c.fifo", mk("same", "g1")).await;
    assert!(send1(&b, "c.fifo", mk("same", "g1")).await.deduplicated);
    // Scope is the group: same body in another group is new.
    let y = send1(&b, "c.fifo", mk("same", "g2")).await;
    assert!(!y.deduplicated && y.message_id != x.message_id);
    // In-batch duplicates are detected too.
    let res = b
        .send("c.fifo", vec![mk("z", "g3"), mk("z", "g3")])
        .await
        .unwrap();
    assert!(res[1].as_ref().unwrap().deduplicated);
    // Attempt id: a retry returns the same messages and handles.
    let req = ReceiveRequest {
        max_messages: 10,
        receive_request_attempt_id: Some("att-1".into()),
        ..Default::default()
    };
    let first = b.receive("c.fifo", req.clone()).await.unwrap();
    assert_eq!(first.len(), 3);
    let retry = b.receive("c.fifo", req).await.unwrap();
    assert_eq!(retry, first);
    let r = b.receive("c.fifo", rr(10)).await.unwrap();
    assert!(r.is_empty());
}

#[tokio::test]
async fn a_receive_attempt_survives_a_crash_and_a_clean_restart_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let attempt = ReceiveRequest {
        max_messages: 2,
        visibility_timeout_seconds: Some(600),
        receive_request_attempt_id: Some("try-1".into()),
        ..Default::default()
    };
    let first = {
        let b = open(dir.path(), &clock);
        let a = QueueAttributes {
            fifo: true,
            ..Default::default()
        };
        b.create_queue("a.fifo", a, BTreeMap::new()).unwrap();
        for i in 0..3 {
            send1(&b, "a.fifo", fmsg(&format!("m{i}"), "g", &format!("d{i}"))).await;
        }
        let first = b.receive("a.fifo", attempt.clone()).await.unwrap();
        assert_eq!(first.len(), 2);
        first
        // Dropped without shutdown: recovery replays the log.
    };
    let b = open(dir.path(), &clock);
    assert_eq!(b.receive("a.fifo", attempt.clone()).await.unwrap(), first);
    // A clean shutdown writes a checkpoint, which carries the attempt too.
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(dir.path(), &clock);
    // SQS remembers a receive attempt for five minutes.
    const ATTEMPT_WINDOW_MS: u64 = 5 * 60 * 1000;
    clock.advance(ATTEMPT_WINDOW_MS - 1);
    assert_eq!(b.receive("a.fifo", attempt.clone()).await.unwrap(), first);
    // Expired: the same id is a new attempt, and the group is still blocked by the lease.
    clock.advance(1);
    assert!(b.receive("a.fifo", attempt).await.unwrap().is_empty());
}

#[tokio::test]
async fn fifo_group_order_survives_redelivery() {
    let (_d, clock, b) = setup();
    let a = QueueAttributes {
        fifo: true,
        visibility_timeout_seconds: 1,
        ..Default::default()
    };
    b.create_queue("o.fifo", a, BTreeMap::new()).unwrap();
    for i in 0..5 {
        send1(&b, "o.fifo", fmsg(&format!("m{i}"), "g", &format!("d{i}"))).await;
    }
    let got = bodies(&b, "o.fifo", 3).await;
    assert_eq!(
        got.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        vec!["m0", "m1", "m2"]
    );
    clock.advance(1_000);
    let got = bodies(&b, "o.fifo", 10).await;
    assert_eq!(
        got.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        vec!["m0", "m1", "m2", "m3", "m4"]
    );
}

#[tokio::test]
async fn dead_letter_after_max_receives() {
    let (_d, clock, b) = setup();
    b.create_queue("dlq", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    b.create_queue("src", redrive_to("dlq", 2), BTreeMap::new())
        .unwrap();
    let sent = send1(&b, "src", msg("poison")).await;
    for i in 1..=2 {
        let r = b.receive("src", rr(1)).await.unwrap();
        assert_eq!(r[0].message.receive_count, i);
        clock.advance(1_000);
    }
    // Third receive: moved to the DLQ instead of delivered.
    assert!(b.receive("src", rr(1)).await.unwrap().is_empty());
    let s = b.get_queue("src").unwrap().stats;
    assert_eq!((s.visible, s.in_flight, s.dead_lettered_total), (0, 0, 1));
    let d = b.receive("dlq", rr(1)).await.unwrap().pop().unwrap();
    assert_eq!(d.message.message_id, sent.message_id);
    assert_eq!(&d.message.body[..], b"poison");
    assert_eq!(d.message.dead_letter_source.as_deref(), Some("src"));
    assert_eq!(b.dead_letter_source_queues("dlq").unwrap(), vec!["src"]);
}

#[tokio::test]
async fn move_tasks() {
    let (_d, clock, b) = setup();
    b.create_queue("dlq", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    b.create_queue("other", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    b.create_queue("src", redrive_to("dlq", 1), BTreeMap::new())
        .unwrap();
    assert_eq!(
        b.start_move_task("src", None, None),
        Err(BrokerError::NotADeadLetterQueue("src".into()))
    );
    for i in 0..5 {
        send1(&b, "src", msg(&format!("m{i}"))).await;
    }
    assert_eq!(b.receive("src", rr(10)).await.unwrap().len(), 5);
    clock.advance(1_000);
    assert!(b.receive("src", rr(10)).await.unwrap().is_empty());
    assert_eq!(b.get_queue("dlq").unwrap().stats.visible, 5);
    let t = b.start_move_task("dlq", None, None).unwrap();
    assert_eq!(t.status, MoveTaskStatus::Running);
    assert_eq!(t.to_move, 5);
    let done = wait_task(&b, "dlq").await;
    assert_eq!(done.status, MoveTaskStatus::Completed);
    assert_eq!(done.moved, 5);
    assert_eq!(b.get_queue("dlq").unwrap().stats.visible, 0);
    let back = b.receive("src", rr(10)).await.unwrap();
    assert_eq!(back.len(), 5);
    // Moved messages start over.
    assert!(back
        .iter()
        .all(|r| r.message.receive_count == 1 && r.message.dead_letter_source.is_none()));
    // To an explicit destination, rate limited; a second task on the same source is refused.
    clock.advance(1_000);
    assert!(b.receive("src", rr(10)).await.unwrap().is_empty());
    let t = b.start_move_task("dlq", Some("other"), Some(1)).unwrap();
    assert_eq!(
        b.start_move_task("dlq", None, None),
        Err(BrokerError::MoveTaskAlreadyRunning("dlq".into()))
    );
    let c = b.cancel_move_task(&t.task_handle).unwrap();
    assert_eq!(c.status, MoveTaskStatus::Cancelling);
    let done = wait_task(&b, "dlq").await;
    assert_eq!(done.status, MoveTaskStatus::Cancelled);
    assert!(done.moved < 5);
    assert_eq!(
        b.cancel_move_task("nope"),
        Err(BrokerError::MoveTaskNotFound("nope".into()))
    );
    let t = b.start_move_task("dlq", Some("other"), None).unwrap();
    let done = wait_task(&b, "dlq").await;
    assert_eq!(done.task_handle, t.task_handle);
    assert_eq!(done.status, MoveTaskStatus::Completed);
    let other = b.get_queue("other").unwrap().stats.visible;
    assert_eq!(other + b.get_queue("dlq").unwrap().stats.visible, 5);
    assert_eq!(b.list_move_tasks("dlq").unwrap().len(), 3);
}

#[tokio::test]
async fn a_move_task_keeps_to_its_rate() {
    let (_d, _clock, b) = setup();
    dead_letter_pair_and(&b, "other");
    b.send("dlq", (0..12).map(|i| msg(&format!("m{i}"))).collect())
        .await
        .unwrap();
    let start = std::time::Instant::now();
    b.start_move_task("dlq", Some("other"), Some(5)).unwrap();
    // 5 per second: at most 5 moved in each started second, so 12 take three windows.
    let done = loop {
        let moved = b.get_queue("other").unwrap().stats.visible;
        let windows = start.elapsed().as_secs() + 1;
        assert!(
            moved <= 5 * windows,
            "{moved} moved after {:?}",
            start.elapsed()
        );
        let t = b.list_move_tasks("dlq").unwrap().remove(0);
        if t.status != MoveTaskStatus::Running {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done.status, MoveTaskStatus::Completed);
    assert_eq!(done.moved, 12);
    assert_eq!(b.get_queue("other").unwrap().stats.visible, 12);
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(2),
        "12 messages at 5/s finished after {:?}",
        start.elapsed()
    );
}

/// Queue `src` dead-letters to `dlq` after one receive; `destination` is a plain queue.
fn dead_letter_pair_and(b: &Broker, destination: &str) {
    b.create_queue("dlq", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let a = QueueAttributes {
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "dlq".into(),
            max_receive_count: 1,
        }),
        ..Default::default()
    };
    b.create_queue("src", a, BTreeMap::new()).unwrap();
    b.create_queue(destination, QueueAttributes::default(), BTreeMap::new())
        .unwrap();
}

async fn wait_task(b: &Broker, source: &str) -> MoveTaskInfo {
    loop {
        let t = b
            .list_move_tasks(source)
            .unwrap()
            .into_iter()
            .next()
            .unwrap();
        if !matches!(
            t.status,
            MoveTaskStatus::Running | MoveTaskStatus::Cancelling
        ) {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bounded_length_policies() {
    let (_d, _c, b) = setup();
    let a = QueueAttributes {
        max_length: Some(2),
        ..Default::default()
    };
    b.create_queue("r", a.clone(), BTreeMap::new()).unwrap();
    let res = b
        .send("r", vec![msg("1"), msg("2"), msg("3")])
        .await
        .unwrap();
    assert!(res[0].is_ok() && res[1].is_ok());
    assert_eq!(
        res[2],
        Err(BrokerError::QueueFull {
            queue: "r".into(),
            max_length: 2
        })
    );

    let d = QueueAttributes {
        overflow_policy: OverflowPolicy::DropOldest,
        ..a.clone()
    };
    b.create_queue("d", d, BTreeMap::new()).unwrap();
    b.send("d", vec![msg("1"), msg("2"), msg("3")])
        .await
        .unwrap();
    let got: Vec<String> = bodies(&b, "d", 10).await.into_iter().map(|x| x.0).collect();
    assert_eq!(got, vec!["2", "3"]);
    assert_eq!(b.get_queue("d").unwrap().stats.dropped_total, 1);

    b.create_queue("dl", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let l = QueueAttributes {
        overflow_policy: OverflowPolicy::DeadLetterOldest,
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "dl".into(),
            max_receive_count: 5,
        }),
        ..a
    };
    b.create_queue("l", l, BTreeMap::new()).unwrap();
    b.send("l", vec![msg("1"), msg("2")]).await.unwrap();
    b.send("l", vec![msg("3")]).await.unwrap();
    assert_eq!(bodies(&b, "dl", 10).await[0].0, "1");
    let got: Vec<String> = bodies(&b, "l", 10).await.into_iter().map(|x| x.0).collect();
    assert_eq!(got, vec!["2", "3"]);
}

#[tokio::test]
async fn ttl_and_retention_expiry() {
    let (_d, clock, b) = setup();
    let a = QueueAttributes {
        message_retention_seconds: 60,
        ..Default::default()
    };
    b.create_queue("q", a, BTreeMap::new()).unwrap();
    let mut short = msg("short");
    short.ttl_seconds = Some(10);
    send1(&b, "q", short).await;
    send1(&b, "q", msg("long")).await;
    clock.advance(10_000);
    b.run_maintenance().await;
    let s = b.get_queue("q").unwrap().stats;
    assert_eq!((s.visible, s.expired_total), (1, 1));
    clock.advance(50_000);
    assert!(b.receive("q", rr(10)).await.unwrap().is_empty());
    assert_eq!(b.get_queue("q").unwrap().stats.expired_total, 2);

    // TTL expiry with a DLQ configured dead-letters.
    b.create_queue("dl", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let a = QueueAttributes {
        message_ttl_seconds: Some(5),
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "dl".into(),
            max_receive_count: 5,
        }),
        ..Default::default()
    };
    b.create_queue("t", a, BTreeMap::new()).unwrap();
    send1(&b, "t", msg("ttl")).await;
    clock.advance(5_000);
    b.run_maintenance().await;
    assert_eq!(b.get_queue("t").unwrap().stats.dead_lettered_total, 1);
    assert_eq!(bodies(&b, "dl", 1).await[0].0, "ttl");
}

#[tokio::test]
async fn purge_and_peek() {
    let (_d, _c, b) = setup();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    b.send("q", vec![msg("1"), msg("2"), msg("3")])
        .await
        .unwrap();
    let p = b.peek("q", 2).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].receive_count, 0);
    b.receive("q", rr(1)).await.unwrap();
    assert_eq!(b.purge("q").await.unwrap(), 3);
    assert!(b.peek("q", 10).unwrap().is_empty());
    let s = b.get_queue("q").unwrap().stats;
    assert_eq!((s.visible, s.in_flight), (0, 0));
}

#[tokio::test]
async fn long_poll_wakes_on_send_and_on_lease_expiry() {
    let (_d, _c, b) = setup();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        b2.receive(
            "q",
            ReceiveRequest {
                max_messages: 1,
                wait_seconds: Some(20),
                ..Default::default()
            },
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    send1(&b, "q", msg("wake")).await;
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(&got[0].message.body[..], b"wake");
}

#[tokio::test]
async fn long_poll_wakes_on_real_time_lease_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    send1(&b, "q", msg("m")).await;
    let req = ReceiveRequest {
        max_messages: 1,
        visibility_timeout_seconds: Some(1),
        ..Default::default()
    };
    b.receive("q", req).await.unwrap();
    let got = b
        .receive(
            "q",
            ReceiveRequest {
                max_messages: 1,
                wait_seconds: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(got[0].message.receive_count, 2);
}

#[tokio::test]
async fn shutdown_wakes_long_polls_and_refuses_work() {
    let (_d, _c, b) = setup();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        b2.receive(
            "q",
            ReceiveRequest {
                max_messages: 1,
                wait_seconds: Some(20),
                ..Default::default()
            },
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    b.shutdown().await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), vec![]);
    assert_eq!(
        b.send("q", vec![msg("x")]).await,
        Err(BrokerError::ShuttingDown)
    );
    assert!(matches!(
        b.create_queue("z", QueueAttributes::default(), BTreeMap::new()),
        Err(BrokerError::ShuttingDown)
    ));
}

#[tokio::test]
async fn delete_queue_wakes_long_polls() {
    let (_d, _c, b) = setup();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        b2.receive(
            "q",
            ReceiveRequest {
                max_messages: 1,
                wait_seconds: Some(20),
                ..Default::default()
            },
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    b.delete_queue("q").unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        Err(BrokerError::QueueNotFound("q".into()))
    );
}

#[tokio::test]
async fn data_dir_is_locked() {
    let (d, _c, _b) = setup();
    match Broker::open(BrokerConfig::new(d.path())) {
        Err(BrokerError::Storage(m)) => {
            assert!(m.contains("locked by another Ferry process"), "{m}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("second open succeeded"),
    }
}

#[tokio::test]
async fn reopen_preserves_messages_leases_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (kept, handle) = {
        let b = open(dir.path(), &clock);
        b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
            .unwrap();
        b.create_queue("f.fifo", fifo_attrs(), BTreeMap::new())
            .unwrap();
        b.send("q", vec![msg("a"), msg("b"), msg("c")])
            .await
            .unwrap();
        send1(&b, "f.fifo", fmsg("f1", "g", "d1")).await;
        let r = b.receive("q", rr(2)).await.unwrap();
        b.delete_messages("q", vec![r[0].receipt_handle.clone()])
            .await
            .unwrap();
        // Half with a checkpoint, half in the log tail.
        b.checkpoint_all().unwrap();
        b.send("q", vec![msg("d")]).await.unwrap();
        (r[1].message.message_id.clone(), r[1].receipt_handle.clone())
        // Dropped without shutdown.
    };
    let b = open(dir.path(), &clock);
    let s = b.get_queue("q").unwrap().stats;
    assert_eq!(
        (s.visible, s.in_flight, s.sent_total, s.deleted_total),
        (2, 1, 4, 1)
    );
    // The lease survived: the handle still works.
    b.change_visibility(
        "q",
        vec![VisibilityChange {
            receipt_handle: handle.clone(),
            visibility_timeout_seconds: 0,
        }],
    )
    .await
    .unwrap()[0]
        .clone()
        .unwrap();
    let got = b.receive("q", rr(10)).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.message.message_id.as_str()).collect();
    assert!(ids.contains(&kept.as_str()));
    assert_eq!(
        got.iter()
            .find(|r| r.message.message_id == kept)
            .unwrap()
            .message
            .receive_count,
        2
    );
    assert_eq!(got.len(), 3);
    // FIFO dedup survived too.
    assert!(
        send1(&b, "f.fifo", fmsg("f1", "g", "d1"))
            .await
            .deduplicated
    );
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(dir.path(), &clock);
    assert_eq!(b.get_queue("q").unwrap().stats.in_flight, 3);
}

#[tokio::test]
async fn recreated_queue_rejects_old_handles() {
    let (_d, _c, b) = setup();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    send1(&b, "q", msg("x")).await;
    let h = b
        .receive("q", rr(1))
        .await
        .unwrap()
        .pop()
        .unwrap()
        .receipt_handle;
    b.delete_queue("q").unwrap();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    assert!(matches!(
        b.delete_messages("q", vec![h]).await.unwrap()[0],
        Err(BrokerError::InvalidReceiptHandle(_))
    ));
    assert_eq!(b.get_queue("q").unwrap().stats.sent_total, 0);
}

#[tokio::test]
async fn idle_temporary_queue_is_deleted() {
    let (_d, clock, b) = setup();
    let a = QueueAttributes {
        idle_delete_seconds: Some(60),
        ..Default::default()
    };
    b.create_queue("tmp", a, BTreeMap::new()).unwrap();
    clock.advance(59_000);
    b.run_maintenance().await;
    assert!(b.get_queue("tmp").is_ok()); // this call counts as activity
    clock.advance(60_000);
    b.run_maintenance().await;
    assert_eq!(
        b.get_queue("tmp"),
        Err(BrokerError::QueueNotFound("tmp".into()))
    );
}

#[tokio::test]
async fn compaction_reclaims_sparse_segments_and_keeps_identity() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = BrokerConfig::new(dir.path());
    c.clock = clock.clone();
    c.segment_bytes = 64 * 1024;
    let b = Broker::open(c.clone()).unwrap();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let body = "x".repeat(1000);
    let first = send1(&b, "q", msg("keeper")).await;
    for _ in 0..30 {
        b.send("q", (0..10).map(|_| msg(&body)).collect())
            .await
            .unwrap();
    }
    // Consume everything except the keeper (which we leave visible at the head).
    let keeper_handle;
    {
        let r = b.receive("q", rr(1000)).await.unwrap();
        let (k, rest): (Vec<_>, Vec<_>) = r
            .into_iter()
            .partition(|r| r.message.message_id == first.message_id);
        keeper_handle = k[0].receipt_handle.clone();
        let hs: Vec<String> = rest.into_iter().map(|r| r.receipt_handle).collect();
        for chunk in hs.chunks(100) {
            b.delete_messages("q", chunk.to_vec()).await.unwrap();
        }
    }
    b.change_visibility(
        "q",
        vec![VisibilityChange {
            receipt_handle: keeper_handle,
            visibility_timeout_seconds: 0,
        }],
    )
    .await
    .unwrap();
    let before = b.disk_bytes();
    for _ in 0..3 {
        b.checkpoint_all().unwrap();
    }
    let after = b.disk_bytes();
    assert!(after < before / 2, "disk {before} -> {after}");
    let got = b.receive("q", rr(10)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.message_id, first.message_id);
    assert_eq!(got[0].message.receive_count, 2);
    assert_eq!(&got[0].message.body[..], b"keeper");
    drop(b);
    let b = Broker::open(c).unwrap();
    assert_eq!(b.get_queue("q").unwrap().stats.in_flight, 1);
}

#[tokio::test]
async fn move_task_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let handle = {
        let b = open(dir.path(), &clock);
        dead_letter_pair_and(&b, "dest");
        b.send("dlq", (0..6).map(|i| msg(&format!("m{i}"))).collect())
            .await
            .unwrap();
        // 2 per second: still running when the broker goes away.
        let t = b.start_move_task("dlq", Some("dest"), Some(2)).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        t.task_handle
        // Dropped without shutdown.
    };
    let b = open(dir.path(), &clock);
    let done = wait_task(&b, "dlq").await;
    assert_eq!(done.task_handle, handle);
    assert_eq!(done.status, MoveTaskStatus::Completed);
    assert_eq!(b.get_queue("dlq").unwrap().stats.visible, 0);
    // Copy-then-remove: a crash may duplicate, never lose.
    let got: std::collections::BTreeSet<String> = bodies(&b, "dest", 100)
        .await
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(got.len(), 6);
}

#[tokio::test]
async fn disk_stays_within_twice_the_live_data() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = BrokerConfig::new(dir.path());
    c.clock = clock.clone();
    c.segment_bytes = 64 * 1024;
    c.default_durability = ferry_log::Durability::Never;
    let b = Broker::open(c).unwrap();
    b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let body = "y".repeat(1000);
    for round in 0..150 {
        b.send("q", (0..10).map(|_| msg(&body)).collect())
            .await
            .unwrap();
        let got = b.receive("q", rr(10)).await.unwrap();
        let (del, keep): (Vec<_>, Vec<_>) = got.into_iter().partition(|_| rng.gen_bool(0.7));
        b.delete_messages("q", del.into_iter().map(|r| r.receipt_handle).collect())
            .await
            .unwrap();
        let changes = keep
            .into_iter()
            .map(|r| VisibilityChange {
                receipt_handle: r.receipt_handle,
                visibility_timeout_seconds: 0,
            })
            .collect();
        b.change_visibility("q", changes).await.unwrap();
        if round % 10 == 9 {
            b.checkpoint_all().unwrap();
        }
    }
    for _ in 0..3 {
        b.checkpoint_all().unwrap();
    }
    let s = b.get_queue("q").unwrap().stats;
    let live_bytes = (s.visible + s.in_flight) * 1100;
    assert!(s.visible > 100, "{s:?}");
    assert!(
        s.disk_bytes <= 2 * live_bytes + 3 * 64 * 1024,
        "disk {} for {} live messages ({} bytes)",
        s.disk_bytes,
        s.visible,
        live_bytes
    );
    assert_eq!(b.peek("q", 1000).unwrap().len() as u64, s.visible);
}

/// Segments of the log tests below (the default is 64 MiB).
const SMALL_SEGMENT: u64 = 64 * 1024;

/// A broker whose queue logs roll every [`SMALL_SEGMENT`] bytes, with queue "q".
fn small_segment_broker(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.clock = clock.clone();
    c.segment_bytes = SMALL_SEGMENT;
    let b = Broker::open(c).unwrap();
    if b.get_queue("q").is_err() {
        b.create_queue("q", QueueAttributes::default(), BTreeMap::new())
            .unwrap();
    }
    b
}

/// About six segments of messages, every one received and deleted: a few hundred records,
/// far below the record count that makes a checkpoint due by itself.
async fn pass_six_segments_through(b: &Broker) {
    let body = "z".repeat(1000);
    for _ in 0..40 {
        b.send("q", (0..10).map(|_| msg(&body)).collect())
            .await
            .unwrap();
        let got = b.receive("q", rr(10)).await.unwrap();
        b.delete_messages("q", got.into_iter().map(|r| r.receipt_handle).collect())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn maintenance_checkpoints_a_drained_queue_so_its_old_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let b = small_segment_broker(dir.path(), &clock);
    pass_six_segments_through(&b).await;
    let before = b.get_queue("q").unwrap().stats.disk_bytes;
    assert!(before > 5 * SMALL_SEGMENT, "{before}");
    b.run_maintenance().await;
    let after = b.get_queue("q").unwrap().stats;
    assert_eq!(after.visible + after.in_flight, 0);
    assert!(
        after.disk_bytes <= 2 * SMALL_SEGMENT,
        "{} bytes on disk after maintenance, {before} before",
        after.disk_bytes
    );
    // What it dropped is not needed: a reopened queue is still empty and takes sends.
    b.shutdown().await.unwrap();
    drop(b);
    let b = small_segment_broker(dir.path(), &clock);
    assert_eq!(b.get_queue("q").unwrap().stats.visible, 0);
    b.send("q", vec![msg("after")]).await.unwrap();
    assert_eq!(
        b.receive("q", rr(10)).await.unwrap()[0].message.body,
        "after"
    );
}

#[tokio::test]
async fn a_segment_freed_after_the_last_checkpoint_goes_without_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let b = small_segment_broker(dir.path(), &clock);
    // One message held in flight in the first segment while others come and go; a
    // checkpoint then has to keep the first segment.
    b.send("q", vec![msg("held")]).await.unwrap();
    let held = b.receive("q", rr(1)).await.unwrap().remove(0);
    pass_six_segments_through(&b).await;
    b.checkpoint_all().unwrap();
    let kept = b.get_queue("q").unwrap().stats.disk_bytes;
    let queue_dir = std::fs::read_dir(dir.path().join("queues"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("q."))
        .unwrap();
    let checkpoint = std::fs::read(queue_dir.join("checkpoint")).unwrap();
    b.run_maintenance().await;
    assert_eq!(b.get_queue("q").unwrap().stats.disk_bytes, kept);
    // Once the held message is deleted, maintenance drops the segments below the checkpoint
    // without writing a new one.
    b.delete_messages("q", vec![held.receipt_handle])
        .await
        .unwrap();
    b.run_maintenance().await;
    let after = b.get_queue("q").unwrap().stats.disk_bytes;
    assert!(
        after < kept / 2,
        "{after} bytes on disk after maintenance, {kept} before"
    );
    assert_eq!(
        std::fs::read(queue_dir.join("checkpoint")).unwrap(),
        checkpoint
    );
    b.shutdown().await.unwrap();
    drop(b);
    let b = small_segment_broker(dir.path(), &clock);
    let s = b.get_queue("q").unwrap().stats;
    assert_eq!((s.visible, s.in_flight), (0, 0), "{s:?}");
}

#[tokio::test]
async fn a_body_digest_given_at_send_comes_back_with_every_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    // The broker stores what the door computed without checking it; any 16 bytes do here.
    let digest = [0xab; 16];
    {
        let b = open(dir.path(), &clock);
        b.create_queue("dlq", QueueAttributes::default(), BTreeMap::new())
            .unwrap();
        b.create_queue("src", redrive_to("dlq", 1), BTreeMap::new())
            .unwrap();
        let with = SendMessage {
            body_md5: Some(digest),
            ..msg("digested")
        };
        b.send("src", vec![with, msg("plain")]).await.unwrap();
        let got: Vec<Option<[u8; 16]>> = b
            .receive("src", rr(2))
            .await
            .unwrap()
            .iter()
            .map(|r| r.message.body_md5)
            .collect();
        assert_eq!(got, vec![Some(digest), None]);
        // Past maxReceiveCount both move to the dead-letter queue, digest and all.
        clock.advance(1_000);
        assert!(b.receive("src", rr(2)).await.unwrap().is_empty());
        // Dropped without shutdown: the dead-letter queue's copies come back from its log.
    }
    let b = open(dir.path(), &clock);
    let mut moved: Vec<(Bytes, Option<[u8; 16]>)> = b
        .receive("dlq", rr(2))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.message.body, r.message.body_md5))
        .collect();
    moved.sort();
    assert_eq!(
        moved,
        vec![
            (Bytes::from_static(b"digested"), Some(digest)),
            (Bytes::from_static(b"plain"), None)
        ]
    );
}
