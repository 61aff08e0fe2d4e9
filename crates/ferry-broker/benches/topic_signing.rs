//! SNS envelope signing cost (a measurement, not a test): one RSA-2048 PKCS#1 v1.5 signature of
//! a typical `Notification` string to sign, per `SignatureVersion`, on one thread.
//!
//! ```text
//! cargo bench -p ferry-broker --bench topic_signing
//! ```
//!
//! Signatures per second per core = 1 / the reported time; that bounds enveloped publishes per
//! second (each publish signs once per distinct message text among its enveloped targets).

use criterion::{criterion_group, criterion_main, Criterion};
use ferry_broker::topic::signing::{SignatureVersion, SigningKey};
use std::time::Duration;

fn signing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let key = SigningKey::load_or_create(dir.path()).expect("signing key");
    let text = format!(
        "Message\n{}\nMessageId\n0b6c2f1e-8a57-4e0b-9b1e-3c1d2a4f5e6d\n\
         Timestamp\n2026-12-05T15:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:000000000000:bench\n\
         Type\nNotification\n",
        "x".repeat(1024)
    );
    let mut g = c.benchmark_group("sns_signature");
    g.measurement_time(Duration::from_secs(5));
    for (name, version) in [
        ("v1_sha1", SignatureVersion::V1),
        ("v2_sha256", SignatureVersion::V2),
    ] {
        g.bench_function(name, |b| b.iter(|| key.sign(version, text.as_bytes())));
    }
    g.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
