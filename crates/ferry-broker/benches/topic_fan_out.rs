//! Topic fan-out throughput (a measurement, not a test): 10 queue subscriptions, half of them
//! with a filter that half the messages match (7.5 deliveries per publish), 1 KiB messages,
//! durability `always`, N concurrent publishers, in-process.
//!
//! ```text
//! cargo bench -p ferry-broker --bench topic_fan_out -- [--publishers 64] [--subscriptions 10] [--seconds 5]
//!     [--enveloped [--signature-version 1|2]]
//! ```
//!
//! Subscriptions use raw message delivery unless `--enveloped`: then each gets the signed SNS
//! JSON envelope, so every publish also costs one RSA signature (`SignatureVersion` of the topic,
//! default 1).

use ferry_broker::topic::{
    PublishRequest, SubscriptionAttributes, TopicAttributes, Topics, TopicsConfig,
};
use ferry_broker::{Broker, BrokerConfig, MessageAttributeValue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The same allocator as the shipped `ferry` binary, so the engine is measured as it runs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    publishers: usize,
    subscriptions: usize,
    seconds: u64,
    enveloped: bool,
    signature_version: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        publishers: 64,
        subscriptions: 10,
        seconds: 5,
        enveloped: false,
        signature_version: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--publishers" => a.publishers = value() as usize,
            "--subscriptions" => a.subscriptions = value() as usize,
            "--seconds" => a.seconds = value(),
            "--signature-version" => a.signature_version = value(),
            "--enveloped" => a.enveloped = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn string_attribute(v: &str) -> MessageAttributeValue {
    MessageAttributeValue {
        data_type: "String".into(),
        string_value: Some(v.into()),
        binary_value: None,
    }
}

fn main() {
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let dir = tempfile::tempdir_in(".").expect("temporary directory");
    let broker = Broker::open(BrokerConfig::new(dir.path())).expect("open broker");
    let topics = Topics::open(TopicsConfig::new(dir.path()), broker.clone()).expect("open topics");
    let topic_attributes = TopicAttributes {
        opaque: [(
            TopicAttributes::SIGNATURE_VERSION.to_string(),
            a.signature_version.to_string(),
        )]
        .into(),
        ..Default::default()
    };
    topics
        .create_topic("bench", topic_attributes, Default::default())
        .expect("create topic");
    for i in 0..a.subscriptions {
        let queue = format!("q{i}");
        broker
            .create_queue(&queue, Default::default(), Default::default())
            .expect("create queue");
        let attributes = SubscriptionAttributes {
            filter_policy: (i % 2 == 1).then(|| r#"{"half": ["yes"]}"#.to_string()),
            raw_message_delivery: !a.enveloped,
            ..Default::default()
        };
        topics
            .subscribe("bench", "sqs", &topics.queue_arn(&queue), attributes)
            .expect("subscribe");
    }
    let body = "x".repeat(1024);
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..a.publishers {
        let (topics, body, stop, published) = (
            topics.clone(),
            body.clone(),
            stop.clone(),
            published.clone(),
        );
        let publishers = a.publishers;
        tasks.push(tokio::spawn(async move {
            let mut i = p;
            while !stop.load(Ordering::Relaxed) {
                let half = if i % 2 == 0 { "yes" } else { "no" };
                let request = PublishRequest {
                    message: body.clone(),
                    attributes: [("half".to_string(), string_attribute(half))].into(),
                    ..Default::default()
                };
                topics.publish("bench", request).await.expect("publish");
                published.fetch_add(1, Ordering::Relaxed);
                i += publishers;
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("publisher task");
    }
    let secs = started.elapsed().as_secs_f64();
    let delivered: u64 = topics.stats()[0]
        .subscriptions
        .iter()
        .map(|s| s.delivered)
        .sum();
    let n = published.load(Ordering::Relaxed);
    let delivery = if a.enveloped {
        format!("enveloped, SignatureVersion {}", a.signature_version)
    } else {
        "raw".to_string()
    };
    println!(
        "fan-out: {} publishers, {} subscriptions (half filtered, half the messages match), 1 KiB, always, {delivery}",
        a.publishers, a.subscriptions
    );
    println!("  publishes   {:>10.0} /s", n as f64 / secs);
    println!("  deliveries  {:>10.0} /s", delivered as f64 / secs);
}
