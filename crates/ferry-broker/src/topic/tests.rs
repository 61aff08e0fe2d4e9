//! Behaviour tests of the topic router against a real queue broker in a temporary directory.

use super::delivery::{Deliverer, HttpPost};
use super::*;
use crate::types::ReceiveRequest;
use std::future::Future;
use std::pin::Pin;

fn open(dir: &std::path::Path) -> (Broker, Topics) {
    let broker = Broker::open(BrokerConfig::new(dir)).unwrap();
    let topics = Topics::open(TopicsConfig::new(dir), broker.clone()).unwrap();
    (broker, topics)
}

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue {
        data_type: "String".into(),
        string_value: Some(v.into()),
        binary_value: None,
    }
}

async fn drain(b: &Broker, q: &str) -> Vec<crate::Message> {
    let mut out = Vec::new();
    loop {
        let r = b
            .receive(
                q,
                ReceiveRequest {
                    max_messages: 100,
                    wait_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if r.is_empty() {
            return out;
        }
        out.extend(r.into_iter().map(|m| m.message));
    }
}

fn sqs_sub(t: &Topics, topic: &str, queue: &str, filter: Option<&str>, raw: bool) -> Subscription {
    let a = SubscriptionAttributes {
        filter_policy: filter.map(str::to_string),
        raw_message_delivery: raw,
        ..Default::default()
    };
    t.subscribe(topic, "sqs", &t.queue_arn(queue), a).unwrap()
}

#[tokio::test]
async fn fan_out_with_filters_raw_and_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t) = open(dir.path());
    for q in ["all", "red", "raw"] {
        b.create_queue(q, Default::default(), Default::default())
            .unwrap();
    }
    t.create_topic("orders", Default::default(), Default::default())
        .unwrap();
    sqs_sub(&t, "orders", "all", None, false);
    sqs_sub(&t, "orders", "red", Some(r#"{"color": ["red"]}"#), false);
    sqs_sub(&t, "orders", "raw", None, true);
    for color in ["red", "blue"] {
        let req = PublishRequest {
            message: format!("hello {color}"),
            subject: Some("s".into()),
            attributes: [("color".to_string(), attr(color))].into(),
            ..Default::default()
        };
        t.publish("orders", req).await.unwrap();
    }
    let all = drain(&b, "all").await;
    assert_eq!(all.len(), 2);
    let env: serde_json::Value = serde_json::from_slice(&all[0].body).unwrap();
    assert_eq!(env["Type"], "Notification");
    assert_eq!(env["Message"], "hello red");
    assert_eq!(env["Subject"], "s");
    assert_eq!(env["TopicArn"], t.topic_arn("orders"));
    assert_eq!(env["MessageAttributes"]["color"]["Value"], "red");
    let red = drain(&b, "red").await;
    assert_eq!(red.len(), 1);
    let raw = drain(&b, "raw").await;
    assert_eq!(raw.len(), 2);
    assert_eq!(&raw[1].body[..], b"hello blue");
    assert_eq!(
        raw[1].attributes["color"].string_value.as_deref(),
        Some("blue")
    );
    let stats = t.stats();
    assert_eq!(stats[0].published, 2);
    assert_eq!(
        stats[0]
            .subscriptions
            .iter()
            .map(|s| s.filtered_out)
            .sum::<u64>(),
        1
    );
}

#[tokio::test]
async fn invalid_filter_policy_is_refused_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, t) = open(dir.path());
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    let a = SubscriptionAttributes {
        filter_policy: Some(r#"{"a": "x"}"#.into()),
        ..Default::default()
    };
    let e = t.subscribe("t", "sqs", &t.queue_arn("q"), a).unwrap_err();
    assert!(matches!(e, TopicError::InvalidFilterPolicy(_)), "{e:?}");
    assert!(e
        .to_string()
        .starts_with("Invalid parameter: FilterPolicy:"));
}

#[tokio::test]
async fn refused_target_goes_to_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t) = open(dir.path());
    b.create_queue("dlq", Default::default(), Default::default())
        .unwrap();
    b.create_queue("ok", Default::default(), Default::default())
        .unwrap();
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    let a = SubscriptionAttributes {
        redrive_policy: Some(format!(
            r#"{{"deadLetterTargetArn":"{}"}}"#,
            t.queue_arn("dlq")
        )),
        ..Default::default()
    };
    t.subscribe("t", "sqs", &t.queue_arn("missing"), a).unwrap();
    sqs_sub(&t, "t", "ok", None, false);
    t.publish(
        "t",
        PublishRequest {
            message: "m".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(drain(&b, "dlq").await.len(), 1);
    assert_eq!(drain(&b, "ok").await.len(), 1);
}

#[tokio::test]
async fn publish_batch_fans_out_each_message_in_order_with_its_own_outcome() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, t) = open(dir.path());
        for q in ["all", "red", "dlq", "solo"] {
            b.create_queue(q, Default::default(), Default::default())
                .unwrap();
        }
        t.create_topic("orders", Default::default(), Default::default())
            .unwrap();
        sqs_sub(&t, "orders", "all", None, true);
        sqs_sub(&t, "orders", "red", Some(r#"{"color": ["red"]}"#), true);
        let to_missing = SubscriptionAttributes {
            raw_message_delivery: true,
            redrive_policy: Some(format!(
                r#"{{"deadLetterTargetArn":"{}"}}"#,
                t.queue_arn("dlq")
            )),
            ..Default::default()
        };
        t.subscribe("orders", "sqs", &t.queue_arn("missing"), to_missing)
            .unwrap();
        let message = |text: &str, color: &str| PublishRequest {
            message: text.to_string(),
            attributes: [("color".to_string(), attr(color))].into(),
            ..Default::default()
        };
        let outcomes = t
            .publish_batch(
                "orders",
                vec![
                    message("red 1", "red"),
                    message("blue 1", "blue"),
                    message("", "red"),
                    message("red 2", "red"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(outcomes.len(), 4);
        assert!(
            matches!(&outcomes[2], Err(TopicError::InvalidParameter { .. })),
            "{:?}",
            outcomes[2]
        );
        let ids: std::collections::HashSet<_> = [0, 1, 3]
            .iter()
            .map(|&i| outcomes[i].as_ref().unwrap().message_id.clone())
            .collect();
        assert_eq!(ids.len(), 3, "each message has its own id");
        let bodies = |messages: Vec<crate::Message>| {
            messages
                .into_iter()
                .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(bodies(drain(&b, "all").await), ["red 1", "blue 1", "red 2"]);
        assert_eq!(bodies(drain(&b, "red").await), ["red 1", "red 2"]);
        // Refused by the missing queue, one by one: each went to the dead-letter queue.
        assert_eq!(bodies(drain(&b, "dlq").await), ["red 1", "blue 1", "red 2"]);
        // A single target needs no intent.
        t.create_topic("single", Default::default(), Default::default())
            .unwrap();
        sqs_sub(&t, "single", "solo", None, true);
        let outcomes = t
            .publish_batch("single", vec![message("a", "x"), message("b", "x")])
            .await
            .unwrap();
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(bodies(drain(&b, "solo").await), ["a", "b"]);
        t.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
    let (_b, t) = open(dir.path());
    assert!(
        t.inner.open_intents.lock().is_empty(),
        "the batch's closing records close every intent"
    );
}

#[tokio::test]
async fn open_intents_are_completed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, t) = open(dir.path());
        for q in ["a", "b"] {
            b.create_queue(q, Default::default(), Default::default())
                .unwrap();
        }
        t.create_topic("t", Default::default(), Default::default())
            .unwrap();
        let s1 = sqs_sub(&t, "t", "a", None, false);
        let s2 = sqs_sub(&t, "t", "b", None, false);
        // A crash between the intent and the fan-out: write the intent only.
        let published = Published {
            message_id: "m1".into(),
            topic: "t".into(),
            timestamp_ms: 1,
            sequence_number: None,
            request: PublishRequest {
                message: "crashed".into(),
                ..Default::default()
            },
        };
        t.append_intent(
            &IntentRecord::Intent {
                published,
                targets: vec![s1.id, s2.id],
            },
            true,
        )
        .await
        .unwrap();
        t.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
    let (b, t) = open(dir.path());
    assert_eq!(t.inner.open_intents.lock().len(), 1);
    t.complete_open_intents().await.unwrap();
    assert_eq!(drain(&b, "a").await.len(), 1);
    assert_eq!(drain(&b, "b").await.len(), 1);
    t.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    drop((b, t));
    let (_b, t) = open(dir.path());
    assert!(
        t.inner.open_intents.lock().is_empty(),
        "the Done record closes the intent"
    );
}

#[tokio::test]
async fn the_retry_loop_leaves_a_publish_that_is_still_fanning_out_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t) = open(dir.path());
    b.create_queue("a", Default::default(), Default::default())
        .unwrap();
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    let s1 = sqs_sub(&t, "t", "a", None, false);
    let published = Published {
        message_id: "m1".into(),
        topic: "t".into(),
        timestamp_ms: 1,
        sequence_number: None,
        request: PublishRequest {
            message: "in flight".into(),
            ..Default::default()
        },
    };
    let intent = |in_flight| Intent {
        published: published.clone(),
        targets: vec![s1.id.clone()],
        in_flight,
    };
    t.inner.open_intents.lock().insert(7, intent(true));
    assert_eq!(t.complete_open_intents().await.unwrap(), 0);
    assert!(drain(&b, "a").await.is_empty(), "delivered twice");
    // Once its fan-out has failed, the intent is the retry loop's.
    t.inner.open_intents.lock().insert(7, intent(false));
    assert_eq!(t.complete_open_intents().await.unwrap(), 1);
    assert_eq!(drain(&b, "a").await.len(), 1);
}

#[tokio::test]
async fn catalog_survives_reopen_with_filters_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (b, t) = open(dir.path());
        b.create_queue("red", Default::default(), Default::default())
            .unwrap();
        t.create_topic(
            "t",
            TopicAttributes {
                display_name: "T".into(),
                ..Default::default()
            },
            [("k".to_string(), "v".to_string())].into(),
        )
        .unwrap();
        sqs_sub(&t, "t", "red", Some(r#"{"color": ["red"]}"#), true);
        t.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
    let (b, t) = open(dir.path());
    let info = t.get_topic("t").unwrap();
    assert_eq!(info.attributes.display_name, "T");
    assert_eq!(info.tags["k"], "v");
    assert_eq!(info.subscriptions_confirmed, 1);
    for color in ["blue", "red"] {
        t.publish(
            "t",
            PublishRequest {
                message: color.into(),
                attributes: [("color".to_string(), attr(color))].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let got = drain(&b, "red").await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"red");
}

#[tokio::test]
async fn fifo_topic_deduplication_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let request = |dedup: &str| PublishRequest {
        message: format!("m-{dedup}"),
        group_id: Some("g".into()),
        deduplication_id: Some(dedup.into()),
        ..Default::default()
    };
    // "one.fifo" has one target (no intent record), "two.fifo" two (an intent record).
    let topics = [
        ("one.fifo", &["q1.fifo"][..]),
        ("two.fifo", &["q2.fifo", "q3.fifo"][..]),
    ];
    let mut first = Vec::new();
    {
        let (b, t) = open(dir.path());
        let fifo = crate::QueueAttributes {
            fifo: true,
            ..Default::default()
        };
        for (topic, queues) in topics {
            let attributes = TopicAttributes {
                fifo: true,
                ..Default::default()
            };
            t.create_topic(topic, attributes, Default::default())
                .unwrap();
            for q in queues {
                b.create_queue(q, fifo.clone(), Default::default()).unwrap();
                sqs_sub(&t, topic, q, None, true);
            }
            first.push(t.publish(topic, request("d1")).await.unwrap());
        }
        t.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
    let (b, t) = open(dir.path());
    for ((topic, queues), first) in topics.iter().zip(&first) {
        let again = t.publish(topic, request("d1")).await.unwrap();
        assert_eq!(again.message_id, first.message_id, "{topic}");
        assert_eq!(again.sequence_number, first.sequence_number, "{topic}");
        let next = t.publish(topic, request("d2")).await.unwrap();
        assert_ne!(next.message_id, first.message_id);
        assert!(
            next.sequence_number > first.sequence_number,
            "{topic}: sequence numbers keep growing across a restart"
        );
        for q in *queues {
            let bodies: Vec<_> = drain(&b, q).await.into_iter().map(|m| m.body).collect();
            assert_eq!(bodies, [&b"m-d1"[..], &b"m-d2"[..]], "{q}");
        }
    }
}

#[tokio::test]
async fn the_intent_log_keeps_fifo_records_for_the_deduplication_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(crate::ManualClock::new(1_000_000));
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    let mut config = TopicsConfig::new(dir.path());
    config.clock = clock.clone();
    let t = Topics::open(config, broker.clone()).unwrap();
    let fifo = TopicAttributes {
        fifo: true,
        ..Default::default()
    };
    t.create_topic("t.fifo", fifo, Default::default()).unwrap();
    // No subscription: the publish has no intent, only its Deduplicated record.
    let request = PublishRequest {
        message: "m".into(),
        group_id: Some("g".into()),
        deduplication_id: Some("d".into()),
        ..Default::default()
    };
    let before = t.inner.intents.next_offset();
    t.publish("t.fifo", request).await.unwrap();
    assert_eq!(t.inner.intents.next_offset(), before + 1, "one record");
    assert_eq!(t.intent_log_floor(), before, "kept inside the window");
    clock.advance(DEDUP_WINDOW_MS - 1);
    assert_eq!(t.intent_log_floor(), before);
    clock.advance(1);
    assert_eq!(
        t.intent_log_floor(),
        before + 1,
        "released once the window is over"
    );
}

#[tokio::test]
async fn fifo_topic_to_fifo_queues_keeps_order_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t) = open(dir.path());
    let fifo = crate::QueueAttributes {
        fifo: true,
        ..Default::default()
    };
    for q in ["a.fifo", "b.fifo"] {
        b.create_queue(q, fifo.clone(), Default::default()).unwrap();
    }
    t.create_topic(
        "t.fifo",
        TopicAttributes {
            fifo: true,
            ..Default::default()
        },
        Default::default(),
    )
    .unwrap();
    sqs_sub(&t, "t.fifo", "a.fifo", None, true);
    sqs_sub(&t, "t.fifo", "b.fifo", None, true);
    let e = t
        .publish(
            "t.fifo",
            PublishRequest {
                message: "x".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TopicError::InvalidParameter { .. }));
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = PublishRequest {
            message: format!("{i}"),
            group_id: Some("g".into()),
            deduplication_id: Some(format!("d{i}")),
            ..Default::default()
        };
        ids.push(t.publish("t.fifo", r).await.unwrap());
    }
    let again = t
        .publish(
            "t.fifo",
            PublishRequest {
                message: "0".into(),
                group_id: Some("g".into()),
                deduplication_id: Some("d0".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.message_id, ids[0].message_id);
    assert!(ids
        .windows(2)
        .all(|w| w[0].sequence_number < w[1].sequence_number));
    for q in ["a.fifo", "b.fifo"] {
        let mut got = Vec::new();
        loop {
            let r = b
                .receive(
                    q,
                    ReceiveRequest {
                        max_messages: 10,
                        wait_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            if r.is_empty() {
                break;
            }
            for m in r {
                got.push(String::from_utf8(m.message.body.to_vec()).unwrap());
                b.delete_messages(q, vec![m.receipt_handle]).await.unwrap();
            }
        }
        assert_eq!(got, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}

/// (headers, body) of one POST.
type Post = (Vec<(String, String)>, String);

/// A fake endpoint: answers with the next status of its script (then 200), records bodies.
struct Script {
    statuses: parking_lot::Mutex<Vec<u16>>,
    posts: parking_lot::Mutex<Vec<Post>>,
}

impl Deliverer for Arc<Script> {
    fn post(&self, r: HttpPost) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>> {
        let me = self.clone();
        Box::pin(async move {
            me.posts
                .lock()
                .push((r.headers, String::from_utf8_lossy(&r.body).to_string()));
            let mut s = me.statuses.lock();
            Ok(if s.is_empty() { 200 } else { s.remove(0) })
        })
    }
}

struct Wrap(Arc<Script>);
impl Deliverer for Wrap {
    fn post(&self, r: HttpPost) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>> {
        self.0.post(r)
    }
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

use std::time::Instant;

/// Two retries one second apart: what the HTTP delivery tests use.
const FAST_RETRIES: &str =
    r#"{"healthyRetryPolicy":{"numRetries":2,"minDelayTarget":1,"maxDelayTarget":1}}"#;

/// Topics started with a scripted endpoint, and topic `t` created.
async fn start_with_endpoint(t: &Topics) -> Arc<Script> {
    let script = Arc::new(Script {
        statuses: parking_lot::Mutex::new(vec![]),
        posts: Default::default(),
    });
    t.start(Arc::new(Wrap(script.clone()))).await.unwrap();
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_confirmation_delivery_retries_and_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t) = open(dir.path());
    b.create_queue("dlq", Default::default(), Default::default())
        .unwrap();
    let script = start_with_endpoint(&t).await;
    let a = SubscriptionAttributes {
        redrive_policy: Some(format!(
            r#"{{"deadLetterTargetArn":"{}"}}"#,
            t.queue_arn("dlq")
        )),
        delivery_policy: Some(FAST_RETRIES.into()),
        ..Default::default()
    };
    let sub = t
        .subscribe("t", "http", "http://example.invalid/hook", a)
        .unwrap();
    assert!(!sub.confirmed);
    // Published before confirmation: not delivered.
    t.publish(
        "t",
        PublishRequest {
            message: "early".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_for(|| !script.posts.lock().is_empty()).await;
    let (headers, body) = script.posts.lock()[0].clone();
    assert!(headers.contains(&(
        "x-amz-sns-message-type".into(),
        "SubscriptionConfirmation".into()
    )));
    let conf: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(conf["Token"], sub.token.clone().unwrap());
    assert!(conf["SubscribeURL"]
        .as_str()
        .unwrap()
        .contains("Action=ConfirmSubscription"));
    t.confirm_subscription("t", conf["Token"].as_str().unwrap())
        .unwrap();
    // Delivered on the first try.
    t.publish(
        "t",
        PublishRequest {
            message: "one".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_for(|| script.posts.lock().len() == 2).await;
    let n: serde_json::Value = serde_json::from_str(&script.posts.lock()[1].1).unwrap();
    assert_eq!(n["Message"], "one");
    // Fails three times (1 + 2 retries) → dead-letter queue.
    script.statuses.lock().extend([500, 500, 500]);
    t.publish(
        "t",
        PublishRequest {
            message: "two".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_for(|| script.posts.lock().len() == 5).await;
    let mut dead = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while dead.is_empty() && Instant::now() < end {
        dead = drain(&b, "dlq").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1);
    let d: serde_json::Value = serde_json::from_slice(&dead[0].body).unwrap();
    assert_eq!(d["Message"], "two");
    let bodies: Vec<String> = script.posts.lock().iter().map(|p| p.1.clone()).collect();
    assert!(!bodies.iter().any(|b| b.contains("early")));
    let s = &t.stats()[0].subscriptions[0];
    assert_eq!((s.delivered, s.failed, s.dead_lettered), (1, 1, 1));
}

fn post_header(p: &Post, name: &str) -> Option<String> {
    p.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_confirmation_is_retried_and_its_token_restores_the_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, t) = open(dir.path());
    let script = start_with_endpoint(&t).await;
    let a = SubscriptionAttributes {
        delivery_policy: Some(FAST_RETRIES.into()),
        ..Default::default()
    };
    let sub = t
        .subscribe("t", "http", "http://example.invalid/hook", a)
        .unwrap();
    t.confirm_subscription("t", sub.token.as_deref().unwrap())
        .unwrap();
    let publish = |m: &str| {
        let t = t.clone();
        let request = PublishRequest {
            message: m.into(),
            ..Default::default()
        };
        async move { t.publish("t", request).await.unwrap() }
    };
    let of_type = |kind: &str| -> Vec<Post> {
        let posts = script.posts.lock();
        posts
            .iter()
            .filter(|p| post_header(p, "x-amz-sns-message-type").as_deref() == Some(kind))
            .cloned()
            .collect()
    };
    let delivery_queue = delivery_queue_name(&sub.id);
    assert!(t.inner.delivery.queue_attributes(&delivery_queue).is_ok());

    // The endpoint refuses the first UnsubscribeConfirmation: it is retried, same message id.
    script.statuses.lock().push(500);
    t.unsubscribe("t", &sub.id).unwrap();
    assert!(t.list_subscriptions(Some("t")).unwrap().is_empty());
    assert_eq!(t.get_topic("t").unwrap().subscriptions_deleted, 1);
    wait_for(|| of_type("UnsubscribeConfirmation").len() == 2).await;
    let farewells = of_type("UnsubscribeConfirmation");
    let ids: Vec<_> = farewells
        .iter()
        .map(|p| post_header(p, "x-amz-sns-message-id").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    let body: serde_json::Value = serde_json::from_str(&farewells[1].1).unwrap();
    assert_eq!(body["Type"], "UnsubscribeConfirmation");
    let token = body["Token"].as_str().unwrap().to_string();
    // Delivered: its delivery queue goes, and nothing published now reaches the endpoint.
    wait_for(|| t.inner.delivery.queue_attributes(&delivery_queue).is_err()).await;
    publish("while unsubscribed").await;

    // The token restores the same subscription, confirmed, and deliveries resume.
    let restored = t.confirm_subscription("t", &token).unwrap();
    assert_eq!(
        (restored.id.as_str(), restored.confirmed),
        (sub.id.as_str(), true)
    );
    assert_eq!(t.get_topic("t").unwrap().subscriptions_deleted, 0);
    assert_eq!(t.list_subscriptions(Some("t")).unwrap(), vec![restored]);
    publish("back").await;
    wait_for(|| !of_type("Notification").is_empty()).await;
    let notes = of_type("Notification");
    assert_eq!(notes.len(), 1);
    let n: serde_json::Value = serde_json::from_str(&notes[0].1).unwrap();
    assert_eq!(n["Message"], "back");
    // Confirming with the token again is idempotent.
    assert_eq!(t.confirm_subscription("t", &token).unwrap().id, sub.id);
}

/// An endpoint that subscribed again after unsubscribing keeps its new subscription when the
/// old farewell's token is used; the old subscription's record and delivery queue go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_an_endpoint_that_subscribed_again_keeps_the_new_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, t) = open(dir.path());
    let _script = start_with_endpoint(&t).await;
    let url = "http://example.invalid/hook";
    let old = t.subscribe("t", "http", url, Default::default()).unwrap();
    t.confirm_subscription("t", old.token.as_deref().unwrap())
        .unwrap();
    t.unsubscribe("t", &old.id).unwrap();
    let new = t.subscribe("t", "http", url, Default::default()).unwrap();
    assert_ne!(new.id, old.id);
    let kept = t
        .confirm_subscription("t", old.token.as_deref().unwrap())
        .unwrap();
    assert_eq!(kept.id, new.id);
    assert_eq!(t.get_topic("t").unwrap().subscriptions_deleted, 0);
    assert!(t
        .inner
        .delivery
        .queue_attributes(&delivery_queue_name(&old.id))
        .is_err());
    assert_eq!(t.list_subscriptions(Some("t")).unwrap().len(), 1);
}

/// The token of an UnsubscribeConfirmation restores the subscription for [`RESTORE_WINDOW_MS`]
/// and not after; the next unsubscribe prunes the expired record and its delivery queue.
#[tokio::test]
async fn an_unsubscribed_endpoint_can_restore_only_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(crate::ManualClock::new(1_000_000));
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    let mut config = TopicsConfig::new(dir.path());
    config.clock = clock.clone();
    let t = Topics::open(config, broker).unwrap();
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    let subscribe = |url: &str| {
        let s = t.subscribe("t", "http", url, Default::default()).unwrap();
        t.confirm_subscription("t", s.token.as_deref().unwrap())
            .unwrap()
    };
    let early = subscribe("http://example.invalid/early");
    let late = subscribe("http://example.invalid/late");
    t.unsubscribe("t", &early.id).unwrap();
    t.unsubscribe("t", &late.id).unwrap();
    clock.advance(RESTORE_WINDOW_MS - 1);
    // Inside the window.
    let restored = t
        .confirm_subscription("t", late.token.as_deref().unwrap())
        .unwrap();
    assert_eq!(restored.id, late.id);
    clock.advance(1);
    // The window is over for `early`.
    assert!(t
        .confirm_subscription("t", early.token.as_deref().unwrap())
        .is_err());
    assert_eq!(t.get_topic("t").unwrap().subscriptions_deleted, 1);
    // The next unsubscribe prunes it, with its delivery queue.
    t.unsubscribe("t", &late.id).unwrap();
    assert_eq!(t.get_topic("t").unwrap().subscriptions_deleted, 1);
    assert!(t
        .inner
        .delivery
        .queue_attributes(&delivery_queue_name(&early.id))
        .is_err());
    assert!(t
        .inner
        .delivery
        .queue_attributes(&delivery_queue_name(&late.id))
        .is_ok());
}

// ------------------------------------------------------------------ stream subscriptions

use crate::stream::batch::{decode_records, StreamRecord};
use crate::stream::{Streams, StreamsConfig};

fn open_with_streams(dir: &std::path::Path) -> (Broker, Topics, Streams) {
    let (b, t) = open(dir);
    let s = Streams::open(StreamsConfig::new(dir)).unwrap();
    t.set_streams(s.clone());
    (b, t, s)
}

/// Every record of every partition: (partition, record).
fn stream_records(s: &Streams, name: &str) -> Vec<(u32, StreamRecord)> {
    let mut out = Vec::new();
    for (index, p) in s.get(name).unwrap().partitions().into_iter().enumerate() {
        let index = index as u32;
        if p.high_watermark() == 0 {
            continue;
        }
        let read = p.read(0, 16 << 20).unwrap();
        for r in decode_records(&read.records).unwrap() {
            out.push((index, r));
        }
    }
    out
}

fn header<'a>(r: &'a StreamRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

fn stream_sub(t: &Topics, topic: &str, stream: &str, a: SubscriptionAttributes) -> Subscription {
    t.subscribe(topic, "stream", stream, a).unwrap()
}

#[tokio::test]
async fn stream_subscription_appends_one_durable_record_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, t, s) = open_with_streams(dir.path());
    s.create("events", 4, &[]).unwrap();
    s.create("raw-red", 1, &[]).unwrap();
    t.create_topic("orders", Default::default(), Default::default())
        .unwrap();
    let sub = stream_sub(&t, "orders", "events", Default::default());
    assert!(sub.confirmed, "stream subscriptions need no confirmation");
    assert_eq!(sub.protocol, Protocol::Stream);
    assert_eq!(sub.token, None);
    stream_sub(
        &t,
        "orders",
        "raw-red",
        SubscriptionAttributes {
            raw_message_delivery: true,
            filter_policy: Some(r#"{"color": ["red"]}"#.into()),
            ..Default::default()
        },
    );
    let before = t.now() as i64;
    let mut ids = Vec::new();
    for color in ["red", "blue"] {
        let bin = MessageAttributeValue {
            data_type: "Binary".into(),
            string_value: None,
            binary_value: Some(Bytes::from_static(&[0, 1, 255])),
        };
        let req = PublishRequest {
            message: format!("hello {color}"),
            attributes: [
                ("color".to_string(), attr(color)),
                ("blob".to_string(), bin),
            ]
            .into(),
            ..Default::default()
        };
        // Returns only once the records are durable: readable right away.
        ids.push(t.publish("orders", req).await.unwrap().message_id);
    }
    let after = t.now() as i64;

    let events = stream_records(&s, "events");
    assert_eq!(events.len(), 2);
    for (id, color) in ids.iter().zip(["red", "blue"]) {
        let (partition, r) = events
            .iter()
            .find(|(_, r)| header(r, STREAM_HEADER_MESSAGE_ID) == Some(id.as_bytes()))
            .unwrap();
        assert_eq!(
            *partition,
            crate::stream::partition_for_key(id.as_bytes(), 4),
            "keyless records are placed by a hash of the message id"
        );
        assert_eq!(r.key, None);
        assert!(r.timestamp_ms >= before && r.timestamp_ms <= after);
        let env: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert_eq!(env["Type"], "Notification");
        assert_eq!(env["MessageId"], id.as_str());
        assert_eq!(env["Message"], format!("hello {color}"));
        assert_eq!(header(r, "color"), Some(color.as_bytes()));
        assert_eq!(header(r, "blob"), Some(&[0u8, 1, 255][..]));
        assert_eq!(
            header(r, STREAM_HEADER_TOPIC_ARN),
            Some(t.topic_arn("orders").as_bytes())
        );
    }

    // Raw delivery, and the filter keeps only the red one.
    let raw = stream_records(&s, "raw-red");
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].1.value.as_deref(), Some(&b"hello red"[..]));
    assert_eq!(header(&raw[0].1, "color"), Some(&b"red"[..]));
    assert_eq!(
        header(&raw[0].1, STREAM_HEADER_MESSAGE_ID),
        Some(ids[0].as_bytes())
    );

    // MessageStructure=json: the `stream` entry, else `default`.
    t.publish(
        "orders",
        PublishRequest {
            message: r#"{"default": "d", "stream": "for streams"}"#.into(),
            message_structure_json: true,
            attributes: [("color".to_string(), attr("red"))].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let raw = stream_records(&s, "raw-red");
    assert_eq!(raw[1].1.value.as_deref(), Some(&b"for streams"[..]));

    let stats = t.stats();
    let by_id = |id: &str| {
        stats[0]
            .subscriptions
            .iter()
            .find(|x| x.id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&sub.id).delivered, 3);
    assert_eq!(by_id(&sub.id).protocol, "stream");
    assert_eq!(
        stats[0]
            .subscriptions
            .iter()
            .map(|x| (x.delivered, x.filtered_out))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        (5, 1)
    );
}

#[tokio::test]
async fn stream_subscription_needs_an_existing_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, t) = open(dir.path());
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    let e = t
        .subscribe("t", "stream", "events", Default::default())
        .unwrap_err();
    assert!(matches!(e, TopicError::InvalidParameter { .. }), "{e:?}");
    let s = Streams::open(StreamsConfig::new(dir.path())).unwrap();
    t.set_streams(s.clone());
    let e = t
        .subscribe("t", "stream", "events", Default::default())
        .unwrap_err();
    assert!(
        matches!(&e, TopicError::InvalidParameter { parameter, .. } if parameter == "Endpoint"),
        "{e:?}"
    );
    s.create("events", 1, &[]).unwrap();
    let a = t
        .subscribe("t", "stream", "events", Default::default())
        .unwrap();
    let again = t
        .subscribe("t", "stream", "events", Default::default())
        .unwrap();
    assert_eq!(a.id, again.id, "same endpoint again → same subscription");
}

#[tokio::test]
async fn fifo_topic_keeps_each_group_in_order_in_one_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, t, s) = open_with_streams(dir.path());
    s.create("ordered", 8, &[]).unwrap();
    t.create_topic(
        "t.fifo",
        TopicAttributes {
            fifo: true,
            content_based_deduplication: true,
            ..Default::default()
        },
        Default::default(),
    )
    .unwrap();
    stream_sub(
        &t,
        "t.fifo",
        "ordered",
        SubscriptionAttributes {
            raw_message_delivery: true,
            ..Default::default()
        },
    );
    let groups = ["g1", "g2", "g3"];
    for i in 0..30 {
        let g = groups[i % 3];
        t.publish(
            "t.fifo",
            PublishRequest {
                message: format!("{g}-{i}"),
                group_id: Some(g.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let records = stream_records(&s, "ordered");
    assert_eq!(records.len(), 30);
    for g in groups {
        let mine: Vec<&(u32, StreamRecord)> = records
            .iter()
            .filter(|(_, r)| r.key.as_deref() == Some(g.as_bytes()))
            .collect();
        assert_eq!(mine.len(), 10);
        let partition = crate::stream::partition_for_key(g.as_bytes(), 8);
        assert!(
            mine.iter().all(|(p, _)| *p == partition),
            "{g}: one partition"
        );
        let values: Vec<String> = mine
            .iter()
            .map(|(_, r)| String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..30)
            .filter(|i| groups[i % 3] == g)
            .map(|i| format!("{g}-{i}"))
            .collect();
        assert_eq!(values, expected, "{g}: publish order");
    }
}

#[tokio::test]
async fn deleted_stream_is_a_refused_target_and_goes_to_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (b, t, s) = open_with_streams(dir.path());
    b.create_queue("dlq", Default::default(), Default::default())
        .unwrap();
    b.create_queue("ok", Default::default(), Default::default())
        .unwrap();
    s.create("gone", 1, &[]).unwrap();
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    let sub = stream_sub(
        &t,
        "t",
        "gone",
        SubscriptionAttributes {
            raw_message_delivery: true,
            redrive_policy: Some(format!(
                r#"{{"deadLetterTargetArn":"{}"}}"#,
                t.queue_arn("dlq")
            )),
            dead_letter_queue: Some("dlq".into()),
            ..Default::default()
        },
    );
    sqs_sub(&t, "t", "ok", None, false);
    s.delete("gone").await.unwrap();
    t.publish(
        "t",
        PublishRequest {
            message: "m".into(),
            ..Default::default()
        },
    )
    .await
    .expect("a refused target does not fail the publish");
    let dead = drain(&b, "dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].body[..], b"m");
    assert_eq!(drain(&b, "ok").await.len(), 1);
    let stats = t.stats();
    let st = stats[0]
        .subscriptions
        .iter()
        .find(|x| x.id == sub.id)
        .unwrap();
    assert_eq!((st.delivered, st.failed, st.dead_lettered), (0, 1, 1));
    assert!(t.inner.open_intents.lock().is_empty());
}

#[tokio::test]
async fn open_intent_to_a_stream_is_completed_once_streams_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let stream_sub_id;
    {
        let (b, t, s) = open_with_streams(dir.path());
        b.create_queue("a", Default::default(), Default::default())
            .unwrap();
        s.create("events", 2, &[]).unwrap();
        t.create_topic("t", Default::default(), Default::default())
            .unwrap();
        let s1 = sqs_sub(&t, "t", "a", None, false);
        let s2 = stream_sub(&t, "t", "events", Default::default());
        stream_sub_id = s2.id.clone();
        // A crash between the intent and the fan-out: write the intent only.
        let published = Published {
            message_id: "m1".into(),
            topic: "t".into(),
            timestamp_ms: 1,
            sequence_number: None,
            request: PublishRequest {
                message: "crashed".into(),
                ..Default::default()
            },
        };
        t.append_intent(
            &IntentRecord::Intent {
                published,
                targets: vec![s1.id, s2.id],
            },
            true,
        )
        .await
        .unwrap();
        t.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        s.close().unwrap();
    }
    // Reopened before the streams are handed over: the queue gets its copy, the stream target
    // stays open (a retryable failure, not a refusal).
    let (b, t) = open(dir.path());
    assert_eq!(t.inner.open_intents.lock().len(), 1);
    assert_eq!(t.complete_open_intents().await.unwrap(), 0);
    assert_eq!(drain(&b, "a").await.len(), 1);
    assert_eq!(
        t.inner.open_intents.lock().values().next().unwrap().targets,
        vec![stream_sub_id]
    );
    let s = Streams::open(StreamsConfig::new(dir.path())).unwrap();
    t.set_streams(s.clone());
    assert_eq!(t.complete_open_intents().await.unwrap(), 1);
    let records = stream_records(&s, "events");
    assert_eq!(records.len(), 1);
    assert_eq!(
        header(&records[0].1, STREAM_HEADER_MESSAGE_ID),
        Some(&b"m1"[..])
    );
    assert_eq!(records[0].1.timestamp_ms, 1);
    assert_eq!(records[0].0, crate::stream::partition_for_key(b"m1", 2));
    assert!(
        drain(&b, "a").await.is_empty(),
        "the queue is not given a second copy"
    );
    t.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().unwrap();
    drop((b, t));
    let (_b, t) = open(dir.path());
    assert!(t.inner.open_intents.lock().is_empty());
}

#[tokio::test]
async fn record_too_large_for_the_stream_is_a_refused_target() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, t, s) = open_with_streams(dir.path());
    s.create("small", 1, &[("max.message.bytes".into(), "200".into())])
        .unwrap();
    t.create_topic("t", Default::default(), Default::default())
        .unwrap();
    let sub = stream_sub(
        &t,
        "t",
        "small",
        SubscriptionAttributes {
            raw_message_delivery: true,
            ..Default::default()
        },
    );
    for message in ["x".repeat(10), "y".repeat(1000)] {
        t.publish(
            "t",
            PublishRequest {
                message,
                ..Default::default()
            },
        )
        .await
        .expect("a refused target does not fail the publish");
    }
    let records = stream_records(&s, "small");
    assert_eq!(records.len(), 1);
    let stats = t.stats();
    let st = &stats[0].subscriptions[0];
    assert_eq!(st.id, sub.id);
    assert_eq!((st.delivered, st.failed, st.dead_lettered), (1, 1, 0));
}
