//! Server lifecycle: crash recovery, graceful shutdown, the data-directory lock, configuration.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{spawn, Server};
use serde_json::{json, Value};

#[test]
fn acknowledged_messages_survive_kill_9() {
    let mut server = Server::start();
    server.create_queue("durable", json!({"visibility_timeout_seconds": 600}));
    for i in 0..5 {
        server.send("durable", &format!("m{i}"));
    }
    // m0 is deleted: it must not come back.
    let got = server.receive("durable", json!({"max": 1}));
    let first = got[0]["body"].as_str().unwrap().to_string();
    let (status, _) = server.post(
        "/v1/queues/durable/messages/delete",
        json!({"receipt_handle": got[0]["receipt_handle"]}),
    );
    assert_eq!(status, 204);
    // One more is received and left in flight: it comes back with its receive count.
    let in_flight = server.receive("durable", json!({"max": 1, "visibility_timeout": 0}));
    let in_flight_body = in_flight[0]["body"].as_str().unwrap().to_string();

    let data_dir = server.data_dir.clone();
    let tmp = server.tmp();
    server.kill9();

    let restarted = Server::start_on(&data_dir, tmp, &[]);
    let got = restarted.receive("durable", json!({"max": 10}));
    let bodies: BTreeSet<String> = got
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..5)
        .map(|i| format!("m{i}"))
        .filter(|b| *b != first)
        .collect();
    assert_eq!(bodies, expected);
    let again = got
        .iter()
        .find(|m| m["body"] == in_flight_body.as_str())
        .unwrap();
    assert_eq!(again["receive_count"], 2);
}

#[test]
fn sigterm_wakes_long_polls_and_exits_zero() {
    let mut server = Server::start();
    server.create_queue("idle", json!({}));
    let base = server.base.clone();
    let poll = std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new()
            .post(format!("{base}/v1/queues/idle/receive"))
            .json(&json!({"max": 1, "wait": 20}))
            .timeout(Duration::from_secs(60))
            .send()
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().unwrap(),
        )
    });
    server.wait_for_metric("ferry_http_long_polls_waiting", 1.0);
    server.signal(libc::SIGTERM);
    let (status, body) = poll.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]));
    let exit = common::wait_exit(&mut server.child);
    assert!(
        exit.success(),
        "exit status {exit:?}; log:\n{}",
        server.log_text()
    );
}

#[test]
fn a_second_server_on_a_locked_data_dir_fails_clearly() {
    let server = Server::start();
    let mut second = spawn(&server.data_dir, &[]);
    let exit = second.wait_exit();
    assert!(!exit.success());
    let log = second.log_text();
    assert!(log.contains("locked"), "{log}");
    // The first server is unaffected.
    let (status, _) = server.get("/readyz");
    assert_eq!(status, 200);
}

#[test]
fn invalid_configuration_is_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("ferry.toml");
    std::fs::write(&config, "durabilty = \"always\"\n").unwrap();
    let mut spawned = spawn(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let exit = spawned.wait_exit();
    assert_eq!(exit.code(), Some(2));
    assert!(
        spawned.log_text().contains("durabilty"),
        "{}",
        spawned.log_text()
    );

    // A directory without ferry.toml (the one above would be read as ./ferry.toml).
    let clean = tempfile::tempdir().unwrap();
    let mut spawned = spawn(&clean.path().join("data"), &["--durability", "sometimes"]);
    assert_eq!(spawned.wait_exit().code(), Some(2));
    assert!(spawned.log_text().contains("--durability"));
}

#[test]
fn configuration_file_env_and_flags_are_layered() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("ferry.toml");
    // The file asks for interval durability and JSON logs; the flag switches back to text.
    std::fs::write(
        &config,
        "durability = \"interval:50\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    let server = Server::start_on(
        &tmp.path().join("data"),
        None,
        &["--config", config.to_str().unwrap(), "--log-format", "text"],
    );
    let log = server.log_text();
    assert!(log.contains("durability=interval:50"), "{log}");
    server.create_queue("q", json!({}));
    server.send("q", "x");
}

#[test]
fn serve_help_documents_every_setting() {
    let out = std::process::Command::new(common::ferry_bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for setting in [
        "--config",
        "--data-dir",
        "FERRY_DATA_DIR",
        "--http-addr",
        "FERRY_HTTP_ADDR",
        "--durability",
        "FERRY_DURABILITY",
        "--log-format",
        "--log-level",
    ] {
        assert!(
            help.contains(setting),
            "{setting} missing from help:\n{help}"
        );
    }
}
