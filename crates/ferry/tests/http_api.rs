//! End-to-end tests of the native HTTP API against the real binary.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Server, BOUND};
use serde_json::{json, Value};

fn bodies(messages: &[Value]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

fn error_code(json: &Value) -> &str {
    json["error"]["code"].as_str().unwrap_or("<none>")
}

#[test]
fn queue_lifecycle() {
    let server = Server::start();
    let (status, created) = server.post(
        "/v1/queues",
        json!({"name": "orders", "attributes": {"visibility_timeout_seconds": 45}, "tags": {"team": "a"}}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["attributes"]["visibility_timeout_seconds"], 45);

    // Idempotent with equal attributes, 409 with different ones.
    let (status, _) = server.post(
        "/v1/queues",
        json!({"name": "orders", "attributes": {"visibility_timeout_seconds": 45}, "tags": {"team": "a"}}),
    );
    assert_eq!(status, 200);
    let (status, body) = server.post(
        "/v1/queues",
        json!({"name": "orders", "attributes": {"visibility_timeout_seconds": 5}}),
    );
    assert_eq!(status, 409);
    assert_eq!(error_code(&body), "QueueAlreadyExists");

    server.create_queue("orders-dlq", json!({}));
    server.create_queue("other", json!({}));
    let (_, list) = server.get("/v1/queues?prefix=orders");
    assert_eq!(list["queues"], json!(["orders", "orders-dlq"]));

    let (status, q) = server.get("/v1/queues/orders");
    assert_eq!(status, 200);
    assert_eq!(q["tags"]["team"], "a");
    assert_eq!(q["stats"]["visible"], 0);

    let (status, q) = server.request(
        "PATCH",
        "/v1/queues/orders",
        Some(json!({"attributes": {"delay_seconds": 3, "redrive_policy": {"dead_letter_queue": "orders-dlq", "max_receive_count": 4}}})),
    );
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["attributes"]["delay_seconds"], 3);
    assert_eq!(q["attributes"]["visibility_timeout_seconds"], 45);
    assert_eq!(q["attributes"]["redrive_policy"]["max_receive_count"], 4);
    let (_, sources) = server.get("/v1/queues/orders-dlq/dead-letter-sources");
    assert_eq!(sources["queues"], json!(["orders"]));
    // null clears an optional attribute.
    let (status, q) = server.request(
        "PATCH",
        "/v1/queues/orders",
        Some(json!({"attributes": {"redrive_policy": null}})),
    );
    assert_eq!(status, 200, "{q}");
    assert!(q["attributes"]["redrive_policy"].is_null());

    // Tags.
    let (status, tags) = server.post("/v1/queues/orders/tags", json!({"tags": {"env": "test"}}));
    assert_eq!(status, 200);
    assert_eq!(tags["tags"], json!({"env": "test", "team": "a"}));
    let (status, _) = server.request("DELETE", "/v1/queues/orders/tags/team", None);
    assert_eq!(status, 204);
    let (_, tags) = server.get("/v1/queues/orders/tags");
    assert_eq!(tags["tags"], json!({"env": "test"}));

    let (status, _) = server.request("DELETE", "/v1/queues/orders", None);
    assert_eq!(status, 204);
    let (status, body) = server.get("/v1/queues/orders");
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "QueueNotFound");
}

#[test]
fn send_receive_delete_visibility_peek_purge() {
    let server = Server::start();
    server.create_queue("work", json!({"visibility_timeout_seconds": 60}));
    let id = server.send("work", "one");
    server.send("work", "two");

    let (status, peeked) = server.get("/v1/queues/work/messages?max=10");
    assert_eq!(status, 200);
    assert_eq!(bodies(peeked["messages"].as_array().unwrap()).len(), 2);
    assert!(peeked["messages"][0].get("receipt_handle").is_none());

    let got = server.receive("work", json!({"max": 10}));
    assert_eq!(bodies(&got), BTreeSet::from(["one".into(), "two".into()]));
    assert!(got.iter().any(|m| m["message_id"] == id.as_str()));
    assert!(got.iter().all(|m| m["receive_count"] == 1));
    // Both are in flight: nothing more to receive.
    assert!(server
        .receive("work", json!({"max": 10, "wait": 0}))
        .is_empty());

    // Make "one" visible again at once.
    let one = got.iter().find(|m| m["body"] == "one").unwrap();
    let two = got.iter().find(|m| m["body"] == "two").unwrap();
    let (status, body) = server.post(
        "/v1/queues/work/messages/visibility",
        json!({"receipt_handle": one["receipt_handle"], "visibility_timeout": 0}),
    );
    assert_eq!(status, 204, "{body}");
    let again = server.receive("work", json!({"max": 10}));
    assert_eq!(bodies(&again), BTreeSet::from(["one".into()]));
    assert_eq!(again[0]["receive_count"], 2);

    // Delete both (one single, one batch).
    let (status, _) = server.post(
        "/v1/queues/work/messages/delete",
        json!({"receipt_handle": again[0]["receipt_handle"]}),
    );
    assert_eq!(status, 204);
    let (status, result) = server.post(
        "/v1/queues/work/messages/delete",
        json!({"receipt_handles": [two["receipt_handle"]]}),
    );
    assert_eq!(status, 200);
    assert_eq!(result["failed"], 0);
    let (_, q) = server.get("/v1/queues/work");
    assert_eq!(q["stats"]["visible"], 0);
    assert_eq!(q["stats"]["in_flight"], 0);

    // Purge.
    for i in 0..5 {
        server.send("work", &format!("m{i}"));
    }
    let (status, purged) = server.post("/v1/queues/work/purge", json!({}));
    assert_eq!(status, 200);
    assert_eq!(purged["purged"], 5);
    let (_, peeked) = server.get("/v1/queues/work/messages");
    assert_eq!(peeked["messages"], json!([]));
}

#[test]
fn message_fields_round_trip() {
    let server = Server::start();
    server.create_queue("fields", json!({}));
    let (status, body) = server.post(
        "/v1/queues/fields/messages",
        json!({
            "body": "hello",
            "attributes": {
                "kind": {"type": "String", "value": "greeting"},
                "n": {"type": "Number.int", "value": "42"},
                "raw": {"type": "Binary", "value": base64::engine::general_purpose::STANDARD.encode([0u8, 1, 255])}
            },
            "priority": 7
        }),
    );
    assert_eq!(status, 200, "{body}");
    let got = server.receive("fields", json!({"max": 1}));
    let m = &got[0];
    assert_eq!(
        m["attributes"]["kind"],
        json!({"type": "String", "value": "greeting"})
    );
    assert_eq!(
        m["attributes"]["n"],
        json!({"type": "Number.int", "value": "42"})
    );
    assert_eq!(m["attributes"]["raw"]["value"], "AAH/");
    assert_eq!(m["priority"], 7);
    assert!(m["sent_timestamp_ms"].as_u64().unwrap() > 0);
}

#[test]
fn long_poll_returns_when_a_message_arrives() {
    let server = Server::start();
    server.create_queue("poll", json!({}));
    let base = server.base.clone();
    let poll = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(format!("{base}/v1/queues/poll/receive"))
            .json(&json!({"max": 1, "wait": 20}))
            .timeout(Duration::from_secs(60))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    });
    // Send once the poll is parked (bounded wait on the server's own gauge).
    server.wait_for_metric("ferry_http_long_polls_waiting", 1.0);
    server.send("poll", "wake up");
    let answer = poll.join().unwrap();
    assert_eq!(answer["messages"][0]["body"], "wake up");
}

#[test]
fn batch_send_reports_partial_failures_per_entry() {
    let server = Server::start();
    server.create_queue("batch", json!({"maximum_message_size": 1024}));
    let (status, result) = server.post(
        "/v1/queues/batch/messages",
        json!({"messages": [
            {"body": "ok-1"},
            {"body": "!!! not base64", "body_encoding": "base64"},
            {"body": "x".repeat(2000)},
            {"body": "ok-2"}
        ]}),
    );
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["failed"], 2);
    let results = result["results"].as_array().unwrap();
    assert_eq!(results[0]["ok"], true);
    assert!(results[0]["message_id"].is_string());
    assert_eq!(results[1]["ok"], false);
    assert_eq!(results[1]["error"]["code"], "InvalidParameter");
    assert_eq!(results[2]["error"]["code"], "MessageTooLarge");
    assert_eq!(results[3]["ok"], true);
    let got = server.receive("batch", json!({"max": 10}));
    assert_eq!(bodies(&got), BTreeSet::from(["ok-1".into(), "ok-2".into()]));

    // Delete batch with one invalid handle.
    let (status, result) = server.post(
        "/v1/queues/batch/messages/delete",
        json!({"receipt_handles": [got[0]["receipt_handle"], "garbage-handle"]}),
    );
    assert_eq!(status, 200);
    assert_eq!(result["failed"], 1);
    assert_eq!(result["results"][0]["ok"], true);
    assert_eq!(
        result["results"][1]["error"]["code"],
        "InvalidReceiptHandle"
    );

    // Too many entries.
    let many: Vec<Value> = (0..101).map(|i| json!({"body": i.to_string()})).collect();
    let (status, body) = server.post("/v1/queues/batch/messages", json!({"messages": many}));
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "InvalidBatch");
}

#[test]
fn binary_bodies_travel_base64_both_ways() {
    let server = Server::start();
    server.create_queue("bin", json!({}));
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = [0xffu8, 0xfe, 0x00, 0x80];
    let (status, body) = server.post(
        "/v1/queues/bin/messages",
        json!({"body": b64.encode(raw), "body_encoding": "base64"}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, peeked) = server.get("/v1/queues/bin/messages");
    assert_eq!(peeked["messages"][0]["body_encoding"], "base64");
    assert_eq!(
        b64.decode(peeked["messages"][0]["body"].as_str().unwrap())
            .unwrap(),
        raw
    );
    // Text bodies can be asked for in base64 too.
    server.send("bin", "plain");
    let got = server.receive("bin", json!({"max": 10, "body_encoding": "base64"}));
    let decoded: BTreeSet<Vec<u8>> = got
        .iter()
        .map(|m| {
            assert_eq!(m["body_encoding"], "base64");
            b64.decode(m["body"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(decoded, BTreeSet::from([raw.to_vec(), b"plain".to_vec()]));
}

#[test]
fn dead_letters_and_redrive() {
    let server = Server::start();
    server.create_queue("jobs-dlq", json!({}));
    server.create_queue(
        "jobs",
        json!({"redrive_policy": {"dead_letter_queue": "jobs-dlq", "max_receive_count": 1}}),
    );
    server.send("jobs", "poison");

    // Receive it, give it back, until it is dead-lettered (bounded).
    let deadline = Instant::now() + BOUND;
    loop {
        let (_, dlq) = server.get("/v1/queues/jobs-dlq/messages");
        if !dlq["messages"].as_array().unwrap().is_empty() {
            assert_eq!(dlq["messages"][0]["body"], "poison");
            assert_eq!(dlq["messages"][0]["dead_letter_source"], "jobs");
            break;
        }
        for m in server.receive("jobs", json!({"max": 1, "wait": 0})) {
            server.post(
                "/v1/queues/jobs/messages/visibility",
                json!({"receipt_handle": m["receipt_handle"], "visibility_timeout": 0}),
            );
        }
        assert!(Instant::now() < deadline, "message never dead-lettered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, sources) = server.get("/v1/queues/jobs-dlq/dead-letter-sources");
    assert_eq!(sources["queues"], json!(["jobs"]));

    // Redrive back to the source.
    let (status, task) = server.post("/v1/queues/jobs-dlq/move-tasks", json!({}));
    assert_eq!(status, 201, "{task}");
    let handle = task["task_handle"].as_str().unwrap().to_string();
    let deadline = Instant::now() + BOUND;
    loop {
        let (_, tasks) = server.get("/v1/queues/jobs-dlq/move-tasks");
        let t = tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task_handle"] == handle.as_str())
            .cloned()
            .unwrap();
        if t["status"] == "COMPLETED" {
            assert_eq!(t["moved"], 1);
            break;
        }
        assert_ne!(t["status"], "FAILED", "{t}");
        assert!(Instant::now() < deadline, "move task never completed: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = server.receive("jobs", json!({"max": 1}));
    assert_eq!(got[0]["body"], "poison");

    // Cancelling an unknown task is a 404 in the error shape.
    let (status, body) = server.post(
        "/v1/queues/jobs-dlq/move-tasks/cancel",
        json!({"task_handle": "nope"}),
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_code(&body), "MoveTaskNotFound");
}

#[test]
fn bad_input_gets_documented_errors_and_the_server_stays_healthy() {
    let server = Server::start();
    server.create_queue("q", json!({}));
    let cases: Vec<(u16, &str, (u16, Value))> = vec![
        (
            400,
            "InvalidRequest",
            server.post_raw("/v1/queues", b"{\"name\": ".to_vec()),
        ),
        (
            400,
            "InvalidRequest",
            server.post("/v1/queues", json!({"attributes": {}})),
        ),
        (
            400,
            "InvalidRequest",
            server.post("/v1/queues/q/messages", json!({"bdy": "x"})),
        ),
        (
            400,
            "InvalidRequest",
            server.post("/v1/queues/q/messages", json!({})),
        ),
        (
            413,
            "RequestTooLarge",
            server.post_raw(
                "/v1/queues/q/messages",
                format!("{{\"body\":\"{}\"}}", "x".repeat(3 * 1024 * 1024)).into_bytes(),
            ),
        ),
        (
            404,
            "QueueNotFound",
            server.post("/v1/queues/missing/messages", json!({"body": "x"})),
        ),
        (404, "QueueNotFound", server.get("/v1/queues/missing")),
        (404, "RouteNotFound", server.get("/v1/nothing-here")),
        (
            405,
            "MethodNotAllowed",
            server.request("PUT", "/v1/queues/q", None),
        ),
        (
            400,
            "InvalidReceiptHandle",
            server.post(
                "/v1/queues/q/messages/delete",
                json!({"receipt_handle": "bogus"}),
            ),
        ),
        (
            400,
            "InvalidParameter",
            server.post("/v1/queues/q/receive", json!({"wait": 21})),
        ),
        (
            400,
            "InvalidParameter",
            server.post("/v1/queues/q/receive", json!({"max": 0})),
        ),
        (
            400,
            "InvalidQueueName",
            server.post("/v1/queues", json!({"name": "bad name!"})),
        ),
        (
            400,
            "InvalidAttributeValue",
            server.post(
                "/v1/queues",
                json!({"name": "x", "attributes": {"visibility_timeout_seconds": 999999}}),
            ),
        ),
    ];
    for (status, code, (got_status, body)) in cases {
        assert_eq!(got_status, status, "{code}: {body}");
        assert_eq!(error_code(&body), code, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
    server.send("q", "still working");
}

/// Every operation in the served OpenAPI document is routed (no route-404 or 405).
#[test]
fn openapi_document_is_served_and_every_operation_is_routed() {
    let server = Server::start();
    let (status, doc) = server.get("/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, item) in paths {
        let concrete = path
            .replace("{name}", "no-such-queue")
            .replace("{key}", "k");
        for method in item.as_object().unwrap().keys() {
            let (status, body) = server.request(&method.to_uppercase(), &concrete, Some(json!({})));
            let code = error_code(&body);
            assert!(
                status != 405 && code != "RouteNotFound",
                "{method} {path}: {status} {body}"
            );
        }
    }
}

#[test]
fn metrics_expose_the_documented_names() {
    let server = Server::start();
    server.create_queue("m", json!({}));
    server.send("m", "x");
    // The fsync histogram is recorded by the log's syncer right after it wakes the waiters
    // (the answer to the send may arrive first): wait for it briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut text = server.metrics();
    while !text.contains("ferry_log_fsync_duration_seconds_bucket")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        text = server.metrics();
    }
    let documented = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .unwrap();
    for name in [
        "ferry_http_request_duration_seconds_bucket",
        // The send above was fdatasynced (durability `always`), so the hook records it.
        "ferry_log_fsync_duration_seconds_bucket",
        "ferry_queue_messages_visible{queue=\"m\"} 1",
        "ferry_queue_messages_in_flight",
        "ferry_queue_messages_delayed",
        "ferry_queue_oldest_message_age_seconds",
        "ferry_queue_messages_sent_total{queue=\"m\"} 1",
        "ferry_queue_messages_received_total",
        "ferry_queue_messages_deleted_total",
        "ferry_queue_messages_expired_total",
        "ferry_queue_messages_dead_lettered_total",
        "ferry_disk_bytes",
        "ferry_ready 1",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
        let base = name.split(['{', ' ']).next().unwrap();
        let base = base.trim_end_matches("_bucket");
        assert!(documented.contains(base), "{base} not in docs/metrics.md");
    }
}

/// `POST /v1/topics/{name}/publish-batch`: a result per entry in input order, filter policies
/// applied per entry, SNS PublishBatch's limits.
#[test]
fn topic_publish_batch_reports_per_entry_results() {
    let server = Server::start();
    let (status, body) = server.post("/v1/topics", json!({"name": "orders"}));
    assert_eq!(status, 201, "{body}");
    server.create_queue("all", json!({}));
    server.create_queue("paid", json!({}));
    for (queue, filter) in [("all", None), ("paid", Some(json!({"status": ["paid"]})))] {
        let mut subscription = json!({"queue": queue, "raw_message_delivery": true});
        if let Some(f) = filter {
            subscription["filter_policy"] = f;
        }
        let (status, body) = server.post("/v1/topics/orders/subscriptions", subscription);
        assert_eq!(status, 201, "{body}");
    }
    let attr = |v: &str| json!({"status": {"type": "String", "value": v}});
    let (status, body) = server.post(
        "/v1/topics/orders/publish-batch",
        json!({"messages": [
            {"message": "one", "attributes": attr("paid")},
            {"message": "two", "attributes": attr("open")},
            {"message": "bad", "attributes": {"b": {"type": "Binary", "value": "not base64!"}}},
            {"message": "three", "attributes": attr("paid")},
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["failed"], 1, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for i in [0, 1, 3] {
        assert_eq!(results[i]["ok"], true, "{body}");
        assert!(results[i]["message_id"].is_string(), "{body}");
    }
    assert_eq!(results[2]["ok"], false);
    assert_eq!(error_code(&results[2]), "InvalidRequest", "{body}");

    // Each successful entry is in every queue whose filter matches it, when the call returns.
    let all = server.receive("all", json!({"max": 10}));
    assert_eq!(
        bodies(&all),
        ["one", "three", "two"].map(String::from).into()
    );
    let paid = server.receive("paid", json!({"max": 10}));
    assert_eq!(bodies(&paid), ["one", "three"].map(String::from).into());

    // Limits: 1..=10 entries, messages totalling at most 256 KiB; unknown topic is 404.
    let message = |m: &str| json!({"message": m});
    for messages in [
        json!([]),
        Value::Array((0..11).map(|i| message(&i.to_string())).collect()),
        Value::Array((0..2).map(|_| message(&"x".repeat(130 * 1024))).collect()),
    ] {
        let (status, body) = server.post(
            "/v1/topics/orders/publish-batch",
            json!({"messages": messages}),
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "InvalidBatch", "{body}");
    }
    let (status, body) = server.post(
        "/v1/topics/nope/publish-batch",
        json!({"messages": [message("x")]}),
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_code(&body), "TopicNotFound", "{body}");
}
