//! CLI smoke tests: the `ferry` client commands against a real server.

mod common;

use std::process::{Command, Output};

use common::Server;
use serde_json::Value;

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn create_send_receive_through_the_cli() {
    let server = Server::start();
    let out = server.cli(&[
        "queue",
        "create",
        "cli-q",
        "--visibility-timeout",
        "40",
        "--tag",
        "a=b",
    ]);
    assert_ok(&out);

    let out = server.cli(&["send", "cli-q", "hello from the cli", "--json"]);
    assert_ok(&out);
    assert!(stdout_json(&out)["message_id"].is_string());

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "{\"body\":\"line one\"}\n\n{\"body\":\"line two\",\"priority\":1}\n",
    )
    .unwrap();
    let out = server.cli(&[
        "send",
        "cli-q",
        "--file",
        file.path().to_str().unwrap(),
        "--json",
    ]);
    assert_ok(&out);
    assert_eq!(
        stdout_json(&out),
        serde_json::json!({"sent": 2, "failed": 0})
    );

    let out = server.cli(&["queue", "list", "--json"]);
    assert_ok(&out);
    assert_eq!(stdout_json(&out)["queues"], serde_json::json!(["cli-q"]));
    let out = server.cli(&["queue", "list"]);
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("NAME") && table.contains("cli-q"), "{table}");

    let out = server.cli(&["queue", "describe", "cli-q", "--json"]);
    assert_ok(&out);
    let q = stdout_json(&out);
    assert_eq!(q["attributes"]["visibility_timeout_seconds"], 40);
    assert_eq!(q["stats"]["visible"], 3);

    let out = server.cli(&["peek", "cli-q", "--json"]);
    assert_ok(&out);
    assert_eq!(stdout_json(&out)["messages"].as_array().unwrap().len(), 3);

    let out = server.cli(&["receive", "cli-q", "--max", "10", "--delete", "--json"]);
    assert_ok(&out);
    let received = stdout_json(&out);
    let mut bodies: Vec<&str> = received["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["hello from the cli", "line one", "line two"]);
    let (_, q) = server.get("/v1/queues/cli-q");
    assert_eq!(q["stats"]["visible"], 0);
    assert_eq!(q["stats"]["in_flight"], 0);

    let out = server.cli(&["queue", "purge", "cli-q"]);
    assert_ok(&out);
    let out = server.cli(&["queue", "delete", "cli-q"]);
    assert_ok(&out);
}

#[test]
fn redrive_follows_the_move_task() {
    let server = Server::start();
    assert_ok(&server.cli(&["queue", "create", "dlq"]));
    assert_ok(&server.cli(&[
        "queue",
        "create",
        "src",
        "--dead-letter-queue",
        "dlq",
        "--max-receive-count",
        "3",
    ]));
    assert_ok(&server.cli(&["queue", "create", "dest"]));
    // Put a message in the DLQ directly, then move it to an explicit destination.
    assert_ok(&server.cli(&["send", "dlq", "stuck"]));
    let out = server.cli(&["redrive", "dlq", "--to", "dest", "--json"]);
    assert_ok(&out);
    let task = stdout_json(&out);
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["moved"], 1);
    let (_, peeked) = server.get("/v1/queues/dest/messages");
    assert_eq!(peeked["messages"][0]["body"], "stuck");
}

#[test]
fn exit_codes() {
    let server = Server::start();
    // 1: the server answered with an error, printed as code and message.
    let out = server.cli(&["queue", "describe", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("QueueNotFound"), "{stderr}");

    // 2: usage error.
    let out = server.cli(&["send"]);
    assert_eq!(out.status.code(), Some(2));
    let out = server.cli(&["send", "q"]);
    assert_eq!(out.status.code(), Some(2));

    // 3: cannot connect. Port 1 on loopback is not a Ferry server.
    let out = Command::new(common::ferry_bin())
        .args(["queue", "list", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    // The bench's own connections (queue and sqs workloads) say so the same way.
    for args in [
        &["bench", "--server", "http://127.0.0.1:1"][..],
        &["bench", "sqs", "--endpoint", "http://127.0.0.1:1"][..],
    ] {
        let out = Command::new(common::ferry_bin())
            .args(args)
            .args(["--duration", "1s", "--warmup", "0s"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot connect to http://127.0.0.1:1"),
            "{stderr}"
        );
    }
}

#[test]
fn bench_runs_briefly_and_reports_json() {
    let server = Server::start();
    let out = server.cli(&[
        "bench",
        "--producers",
        "1",
        "--consumers",
        "1",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--size",
        "64",
        "--json",
    ]);
    assert_ok(&out);
    let report = stdout_json(&out);
    assert!(report["acknowledged"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    for key in ["p50", "p90", "p99", "p999"] {
        assert!(report["end_to_end_latency_us"][key].is_u64());
        assert!(report["publish_latency_us"][key].is_u64());
    }
}

fn run_ok_json(server: &Server, args: &[&str]) -> Value {
    let out = server.cli(args);
    assert_ok(&out);
    stdout_json(&out)
}

/// `ferry bench topic` counts every queue delivery and checks the count against the queues:
/// none missing, none duplicated.
#[test]
fn bench_topic_counts_deliveries_exactly() {
    let server = Server::start();
    // Batches through /publish-batch, then single publishes through /publish on the same,
    // re-created topic.
    for batch in ["4", "1"] {
        let out = server.cli(&[
            "bench",
            "topic",
            "--producers",
            "2",
            "--batch",
            batch,
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--size",
            "64",
            "--json",
        ]);
        let report = stdout_json(&out);
        assert_ok(&out);
        let n = |k: &str| {
            report[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k}: {report}"))
        };
        assert_eq!(report["target"], "topic");
        assert!(n("publishes") > 0, "{report}");
        assert!(n("matched") <= n("publishes"), "{report}");
        // 5 unfiltered subscriptions get every publish, 5 filtered ones the matching ones.
        assert_eq!(
            n("deliveries"),
            5 * n("publishes") + 5 * n("matched"),
            "{report}"
        );
        assert_eq!(n("errors"), 0, "{report}");
        assert_eq!(n("missing"), 0, "{report}");
        assert_eq!(n("duplicates"), 0, "{report}");
        assert_eq!(report["deliveries_check_ok"], true, "{report}");
        let queues = report["queues"].as_array().unwrap();
        assert_eq!(queues.len(), 10);
        assert_eq!(queues.iter().filter(|q| q["filtered"] == true).count(), 5);
        for q in queues {
            let want = if q["filtered"] == true {
                n("total_matched")
            } else {
                n("total_publishes")
            };
            assert!(want > 0, "{report}");
            assert_eq!(q["expected"], want, "{report}");
            assert_eq!(q["found"], want, "{report}");
        }
        let (status, subscriptions) = server.get("/v1/topics/bench-topic/subscriptions");
        assert_eq!(status, 200);
        assert_eq!(subscriptions["subscriptions"].as_array().unwrap().len(), 10);
    }
    // More than SNS PublishBatch's 10 entries is a usage error.
    let out = server.cli(&["bench", "topic", "--batch", "11"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `ferry bench sqs` drives the AWS door with SendMessageBatch, ReceiveMessage and
/// DeleteMessageBatch; the zero-config server accepts it unsigned from loopback.
#[test]
fn bench_sqs_runs_through_the_aws_door() {
    let server = Server::start();
    let endpoint = format!("http://{}", server.door_addr("aws"));
    // Twice: the second run's PurgeQueue falls within SQS's 60-second window.
    for _ in 0..2 {
        let report = run_ok_json(
            &server,
            &[
                "bench",
                "sqs",
                "--endpoint",
                &endpoint,
                "--producers",
                "1",
                "--consumers",
                "1",
                "--duration",
                "1s",
                "--warmup",
                "0s",
                "--size",
                "64",
                "--json",
            ],
        );
        let n = |k: &str| {
            report[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k}: {report}"))
        };
        assert_eq!(report["target"], "sqs");
        assert!(n("acknowledged") > 0, "{report}");
        assert!(n("acknowledged") <= n("sent"), "{report}");
        assert!(n("acknowledged") <= n("received"), "{report}");
        assert_eq!(n("errors"), 0, "{report}");
    }
}

/// `ferry bench kafka` produces through the Kafka door with acks=all, then reads everything
/// back from offset 0 and checks that every acknowledged record is there. Run twice: the
/// second run deletes and recreates the stream.
#[test]
fn bench_kafka_produces_and_reads_back_every_acknowledged_record() {
    let server = Server::start();
    let bootstrap = server.door_addr("kafka");
    let mut last_total = 0;
    for partitions in ["3", "2"] {
        let report = run_ok_json(
            &server,
            &[
                "bench",
                "kafka",
                "--bootstrap",
                &bootstrap,
                "--partitions",
                partitions,
                "--producers",
                "2",
                "--consumers",
                "2",
                "--size",
                "100",
                "--batch-bytes",
                "10000",
                "--duration",
                "1s",
                "--warmup",
                "0s",
                "--json",
            ],
        );
        let n = |k: &str| {
            report[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k}: {report}"))
        };
        assert_eq!(report["target"], "kafka");
        assert_eq!(n("records_per_batch"), 100, "{report}");
        assert!(n("produced") > 0, "{report}");
        assert!(n("total_produced") >= n("produced"), "{report}");
        // Whole requests: every partition got the same number of batches.
        let per_request = 100 * partitions.parse::<u64>().unwrap();
        assert_eq!(n("total_produced") % per_request, 0, "{report}");
        assert_eq!(n("consumed"), n("total_produced"), "{report}");
        assert_eq!(report["check_ok"], true, "{report}");
        assert_eq!(n("errors"), 0, "{report}");
        last_total = n("total_produced");
    }
    // The stream holds the second run's records, in its second run's partitions.
    let (status, stream) = server.get("/v1/streams/bench-topic");
    assert_eq!(status, 200, "{stream}");
    assert_eq!(
        stream["partitions"].as_array().map(Vec::len),
        Some(2),
        "{stream}"
    );
    // A consume-only run reads an existing stream through, finding its partitions itself.
    let consumed = run_ok_json(
        &server,
        &[
            "bench",
            "kafka",
            "--bootstrap",
            &bootstrap,
            "--consume-only",
            "--json",
        ],
    );
    assert_eq!(consumed["target"], "kafka-consume", "{consumed}");
    assert_eq!(consumed["partitions"], 2, "{consumed}");
    assert_eq!(consumed["held"], last_total, "{consumed}");
    assert_eq!(consumed["consumed"], last_total, "{consumed}");
    // Batches of 100 records of 100 bytes: more than 10,000 bytes each.
    let batch_mb = consumed["consumed_batch_mb_per_sec"].as_f64().unwrap();
    let seconds = consumed["consume_s"].as_f64().unwrap();
    assert!(
        batch_mb * 1e6 * seconds > (last_total * 100) as f64,
        "{consumed}"
    );
    // A stream that does not exist is an error, not an empty success.
    let missing = server.cli(&[
        "bench",
        "kafka",
        "--bootstrap",
        &bootstrap,
        "--topic",
        "no-such-stream",
        "--consume-only",
    ]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("no-such-stream: the topic does not exist"),
        "{missing:?}"
    );
}

/// With credentials configured the AWS door requires SigV4; the bench signs.
#[test]
fn bench_sqs_signs_requests_when_the_server_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        "[[aws.credentials]]\naccess_key_id = \"AKIDBENCH\"\nsecret_access_key = \"bench-secret\"\n",
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let endpoint = format!("http://{}", server.door_addr("aws"));
    let bench = |secret: &str| {
        server.cli(&[
            "bench",
            "sqs",
            "--endpoint",
            &endpoint,
            "--access-key-id",
            "AKIDBENCH",
            "--secret-access-key",
            secret,
            "--producers",
            "1",
            "--consumers",
            "1",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--size",
            "64",
            "--json",
        ])
    };
    let out = bench("bench-secret");
    assert_ok(&out);
    assert!(stdout_json(&out)["acknowledged"].as_u64().unwrap() > 0);
    let out = bench("wrong-secret");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
}
