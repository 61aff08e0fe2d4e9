//! Starts the real `ferry` binary on free ports in a temporary data directory and talks to it.
//!
//! Every door is bound to port 0; the chosen HTTP address is read from the server's
//! `listening door=http addr=…` log line. Waits are bounded; nothing asserts on timing.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Upper bound for any wait on the server (start, readiness, exit).
pub const BOUND: Duration = Duration::from_secs(60);

pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// `--<door>-addr 127.0.0.1:0` for every door this binary has, so parallel tests never collide
/// on a default port.
fn door_flags() -> &'static Vec<String> {
    static FLAGS: OnceLock<Vec<String>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let help = Command::new(ferry_bin())
            .args(["serve", "--help"])
            .output()
            .expect("run ferry serve --help");
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        let mut flags = Vec::new();
        for door in [
            "--http-addr",
            "--aws-addr",
            "--kafka-addr",
            "--amqp-addr",
            "--mqtt-addr",
        ] {
            if help.contains(door) {
                flags.push(door.to_string());
                flags.push("127.0.0.1:0".to_string());
            }
        }
        flags
    })
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    /// Keeps the temporary directory alive while the server runs.
    _tmp: Option<Arc<tempfile::TempDir>>,
    pub log: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::blocking::Client,
}

/// The process and its stderr lines, before any address is known.
pub struct Spawned {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    addr: mpsc::Receiver<String>,
    /// Ends at the child's stderr EOF; joined so the log is complete after exit.
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Starts `ferry serve` on `data_dir` with free ports, plus `extra` arguments.
pub fn spawn(data_dir: &Path, extra: &[&str]) -> Spawned {
    let mut child = Command::new(ferry_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(door_flags())
        .args(extra)
        .current_dir(data_dir.parent().unwrap_or(data_dir))
        .env_remove("FERRY_HTTP_ADDR")
        .env_remove("FERRY_DATA_DIR")
        .env("FERRY_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry serve");
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let log2 = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening") && line.contains("door=http") {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("addr="))
                {
                    let _ = tx.send(addr.to_string());
                }
            }
            log2.lock().unwrap().push(line);
        }
    });
    Spawned {
        child,
        log,
        addr: rx,
        reader: Some(reader),
    }
}

impl Spawned {
    /// Waits for the process to exit (bounded) and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_exit(&mut self.child);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "ferry did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Server {
    /// A fresh server in a new temporary data directory, ready to serve queue calls.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let tmp = Arc::new(tempfile::tempdir().expect("tempdir"));
        let data_dir = tmp.path().join("data");
        Server::start_on(&data_dir, Some(tmp), extra)
    }

    /// A server on an existing data directory (restart tests).
    pub fn start_on(
        data_dir: &Path,
        tmp: Option<Arc<tempfile::TempDir>>,
        extra: &[&str],
    ) -> Server {
        let spawned = spawn(data_dir, extra);
        let addr = match spawned.addr.recv_timeout(BOUND) {
            Ok(addr) => addr,
            Err(_) => panic!("no listening line; log:\n{}", spawned.log_text()),
        };
        let server = Server {
            child: spawned.child,
            base: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
            _tmp: tmp,
            log: spawned.log,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        server.wait_ready();
        server
    }

    /// The temporary directory, to restart another server on the same data.
    pub fn tmp(&self) -> Option<Arc<tempfile::TempDir>> {
        self._tmp.clone()
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The address a door (`http`, `aws`, `kafka`) listens on, from its `listening` log line.
    pub fn door_addr(&self, door: &str) -> String {
        let deadline = Instant::now() + BOUND;
        let field = format!("door={door}");
        loop {
            let found = self.log.lock().unwrap().iter().find_map(|line| {
                if !(line.contains("listening") && line.split_whitespace().any(|f| f == field)) {
                    return None;
                }
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix("addr="))
                    .map(str::to_string)
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no listening line for door {door}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; returns the status and the JSON body (`null` when empty).
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        let text = response.text().expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, Some(body))
    }

    /// Sends raw bytes (malformed-input tests).
    pub fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("request");
        let status = response.status().as_u16();
        let json = response.json().unwrap_or(Value::Null);
        (status, json)
    }

    pub fn create_queue(&self, name: &str, attributes: Value) {
        let (status, body) = self.post(
            "/v1/queues",
            json!({"name": name, "attributes": attributes}),
        );
        assert!(
            status == 201 || status == 200,
            "create {name}: {status} {body}"
        );
    }

    pub fn send(&self, queue: &str, body: &str) -> String {
        let (status, json) = self.post(
            &format!("/v1/queues/{queue}/messages"),
            json!({"body": body}),
        );
        assert_eq!(status, 200, "{json}");
        json["message_id"].as_str().unwrap().to_string()
    }

    pub fn receive(&self, queue: &str, request: Value) -> Vec<Value> {
        let (status, json) = self.post(&format!("/v1/queues/{queue}/receive"), request);
        assert_eq!(status, 200, "{json}");
        json["messages"].as_array().unwrap().clone()
    }

    pub fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .expect("metrics")
            .text()
            .expect("metrics text")
    }

    /// Waits (bounded) until `/metrics` has a sample line starting with `prefix` whose value
    /// is at least `min`.
    pub fn wait_for_metric(&self, prefix: &str, min: f64) {
        let deadline = Instant::now() + BOUND;
        loop {
            let text = self.metrics();
            let value = text
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .fold(0.0, f64::max);
            if value >= min {
                return;
            }
            assert!(Instant::now() < deadline, "{prefix} never reached {min}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = wait_exit(&mut self.child);
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(ferry_bin())
            .args(args)
            .env("FERRY_SERVER", &self.base)
            .output()
            .expect("run ferry")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
