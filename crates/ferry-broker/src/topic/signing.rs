//! SNS message signing: the server's RSA key and certificate, and the string to sign.
//!
//! Every JSON envelope a subscriber receives (`Notification`, `SubscriptionConfirmation`,
//! `UnsubscribeConfirmation`) carries a base64 RSA PKCS#1 v1.5 signature of a canonical string
//! built from some of its fields, and the URL of the certificate whose key made it. A subscriber
//! verifies a message exactly as it verifies one from AWS.
//!
//! ```text
//! Notification                     SubscriptionConfirmation / UnsubscribeConfirmation
//! Message\n<Message>\n             Message\n<Message>\n
//! MessageId\n<MessageId>\n         MessageId\n<MessageId>\n
//! Subject\n<Subject>\n  (if set)   SubscribeURL\n<SubscribeURL>\n
//! Timestamp\n<Timestamp>\n         Timestamp\n<Timestamp>\n
//! TopicArn\n<TopicArn>\n           Token\n<Token>\n
//! Type\n<Type>\n                   TopicArn\n<TopicArn>\n
//!                                  Type\n<Type>\n
//! ```
//!
//! `SignatureVersion` `1` signs with SHA1withRSA, `2` with SHA256withRSA (the topic attribute
//! `SignatureVersion`, default 1).
//!
//! The key (2048-bit RSA, PKCS#8) and a self-signed X.509 certificate for it are made on first
//! use and kept in `<data_dir>/topics/signing/`, so messages signed before a restart still verify
//! after it. The door serves the certificate at `/<cert_file_name>` (as AWS serves
//! `SimpleNotificationService-<id>.pem`).
//!
//! An RSA-2048 signature costs about a millisecond of CPU, so it is never computed on an async
//! worker: [`Signer::sign_envelopes`] runs it on tokio's blocking pool, at most
//! [`SigningKey::max_concurrent`] at once (one per core), and the publish awaits it. Version 2
//! signs with `ring` (assembly bignum, 2–3× faster than the pure-Rust `rsa` crate here);
//! `ring` cannot sign SHA-1, so version 1 stays on `rsa`.

use crate::BrokerError;
use base64::Engine;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde_json::{Map, Value};
use sha2::Digest;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Size of the generated key.
pub const KEY_BITS: usize = 2048;
/// Folder under `<data_dir>/topics` holding the key and certificate.
pub const SIGNING_DIR: &str = "signing";
const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";
/// Subject common name of the self-signed certificate.
const CERT_COMMON_NAME: &str = "Ferry Simple Notification Service";
/// Most signatures computed at once per key, whatever the number of cores: each occupies a
/// blocking thread for its whole duration.
const MAX_CONCURRENT_SIGNATURES: usize = 16;

/// Fields signed in a `Notification`, in order; a missing `Subject` is left out.
pub const NOTIFICATION_FIELDS: [&str; 6] = [
    "Message",
    "MessageId",
    "Subject",
    "Timestamp",
    "TopicArn",
    "Type",
];
/// Fields signed in a `SubscriptionConfirmation` or `UnsubscribeConfirmation`, in order.
pub const CONFIRMATION_FIELDS: [&str; 7] = [
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
];

/// The `SignatureVersion` of a topic's envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// SHA1withRSA.
    #[default]
    V1,
    /// SHA256withRSA.
    V2,
}

impl SignatureVersion {
    /// Parses the topic attribute: exactly `1` or `2`.
    pub fn parse(s: &str) -> Result<SignatureVersion, String> {
        match s {
            "1" => Ok(SignatureVersion::V1),
            "2" => Ok(SignatureVersion::V2),
            other => Err(format!("SignatureVersion must be 1 or 2, got {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignatureVersion::V1 => "1",
            SignatureVersion::V2 => "2",
        }
    }
}

/// The canonical string an envelope's `Signature` covers (see the module docs). Fields that
/// are absent or not strings are left out, which is how an unset `Subject` is skipped.
pub fn string_to_sign(envelope: &Map<String, Value>) -> String {
    let fields: &[&str] = match envelope.get("Type").and_then(Value::as_str) {
        Some("Notification") => &NOTIFICATION_FIELDS,
        _ => &CONFIRMATION_FIELDS,
    };
    let mut out = String::new();
    for k in fields {
        if let Some(Value::String(v)) = envelope.get(*k) {
            out.push_str(k);
            out.push('\n');
            out.push_str(v);
            out.push('\n');
        }
    }
    out
}

/// The SHA256withRSA signer: `ring` when it accepts the key (it always accepts the keys
/// [`SigningKey::load_or_create`] makes), else the `rsa` crate.
enum Sha256Key {
    Ring(ring::rsa::KeyPair),
    RustCrypto(rsa::pkcs1v15::SigningKey<sha2::Sha256>),
}

/// The server's signing key and its certificate.
pub struct SigningKey {
    sha1: rsa::pkcs1v15::SigningKey<sha1::Sha1>,
    sha256: Sha256Key,
    cert_pem: String,
    cert_file_name: String,
    /// Signatures in flight, at most one per core (see [`SigningKey::max_concurrent`]).
    slots: Arc<Semaphore>,
    max_concurrent: usize,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("cert_file_name", &self.cert_file_name)
            .finish_non_exhaustive()
    }
}

fn storage(path: &Path, what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(format!("{what} {}: {e}", path.display()))
}

impl SigningKey {
    /// Loads the key and certificate from `dir`, or makes and stores them when `dir` has none.
    /// Blocking (generating a key takes a fraction of a second to a few seconds).
    pub fn load_or_create(dir: &Path) -> Result<SigningKey, BrokerError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        match std::fs::read_to_string(&key_path) {
            Ok(key_pem) => {
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(&key_pem)
                    .map_err(|e| storage(&key_path, "SNS signing key", e))?;
                let cert_pem = match std::fs::read_to_string(&cert_path) {
                    Ok(c) => c,
                    // A crash between the two writes: the certificate is derived from the key.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let c = self_signed_certificate(&key_pem)?;
                        crate::catalog::write_atomic(&cert_path, c.as_bytes())?;
                        c
                    }
                    Err(e) => return Err(storage(&cert_path, "reading", e)),
                };
                Ok(SigningKey::new(key, cert_pem))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| storage(dir, "creating", e))?;
                let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), KEY_BITS)
                    .map_err(|e| BrokerError::Storage(format!("generating an RSA key: {e}")))?;
                let key_pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| BrokerError::Storage(format!("encoding the RSA key: {e}")))?;
                let cert_pem = self_signed_certificate(&key_pem)?;
                // Certificate first: a key on disk always has its certificate beside it, or
                // gets one made from it above.
                crate::catalog::write_atomic(&cert_path, cert_pem.as_bytes())?;
                write_private(&key_path, key_pem.as_bytes())?;
                Ok(SigningKey::new(key, cert_pem))
            }
            Err(e) => Err(storage(&key_path, "reading", e)),
        }
    }

    fn new(key: rsa::RsaPrivateKey, cert_pem: String) -> SigningKey {
        let digest = sha2::Sha256::digest(cert_pem.as_bytes());
        let cert_file_name = format!(
            "SimpleNotificationService-{}.pem",
            hex::encode(&digest[..16])
        );
        let sha256 = match key
            .to_pkcs8_der()
            .map_err(|e| e.to_string())
            .and_then(|der| {
                ring::rsa::KeyPair::from_pkcs8(der.as_bytes()).map_err(|e| e.to_string())
            }) {
            Ok(pair) => Sha256Key::Ring(pair),
            Err(e) => {
                tracing::warn!(error = %e, "ring refuses the SNS signing key; SignatureVersion 2 signs with the slower rsa crate");
                Sha256Key::RustCrypto(rsa::pkcs1v15::SigningKey::new(key.clone()))
            }
        };
        let max_concurrent = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_CONCURRENT_SIGNATURES);
        SigningKey {
            sha1: rsa::pkcs1v15::SigningKey::new(key),
            sha256,
            cert_pem,
            cert_file_name,
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
        }
    }

    /// How many signatures run at once: one per core (at most 16), so signing never takes
    /// more than the machine's CPUs and a burst of publishes queues for them in order.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// The certificate, PEM-encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The file name the certificate is served under: `SimpleNotificationService-<32 hex>.pem`
    /// (the hex is the start of the SHA-256 of the PEM, so a new key gets a new name).
    pub fn cert_file_name(&self) -> &str {
        &self.cert_file_name
    }

    /// The base64 signature of `data` (RSA PKCS#1 v1.5, blinded). CPU-bound for about a
    /// millisecond: call it from a blocking thread (as [`Signer::sign_envelopes`] does).
    pub fn sign(&self, version: SignatureVersion, data: &[u8]) -> String {
        let bytes = match (version, &self.sha256) {
            (SignatureVersion::V1, _) => self
                .sha1
                .sign_with_rng(&mut rand::thread_rng(), data)
                .to_vec(),
            (SignatureVersion::V2, Sha256Key::Ring(pair)) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                match pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    data,
                    &mut signature,
                ) {
                    Ok(()) => signature,
                    // Only a failing system RNG gets here; the rsa crate has its own.
                    Err(_) => {
                        rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.sha1.as_ref().clone())
                            .sign_with_rng(&mut rand::thread_rng(), data)
                            .to_vec()
                    }
                }
            }
            (SignatureVersion::V2, Sha256Key::RustCrypto(key)) => {
                key.sign_with_rng(&mut rand::thread_rng(), data).to_vec()
            }
        };
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Signs each of `texts` on a blocking thread, waiting for a free slot first.
    async fn sign_off_runtime(
        self: &Arc<Self>,
        version: SignatureVersion,
        texts: Vec<String>,
    ) -> Result<Vec<String>, BrokerError> {
        let failed = |e: &dyn std::fmt::Display| {
            BrokerError::Storage(format!("signing an SNS envelope: {e}"))
        };
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| failed(&e))?;
        let key = self.clone();
        // The slot moves into the thread: a publish dropped while waiting does not free it
        // before the signature is done.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            texts
                .iter()
                .map(|t| key.sign(version, t.as_bytes()))
                .collect()
        })
        .await
        .map_err(|e| failed(&e))
    }
}

/// Writes the private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    crate::catalog::write_atomic(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| storage(path, "restricting", e))?;
    }
    Ok(())
}

/// A self-signed certificate (SHA256withRSA) for the PKCS#8 key, valid for a century.
fn self_signed_certificate(key_pem: &str) -> Result<String, BrokerError> {
    let err = |e: rcgen::Error| BrokerError::Storage(format!("making the SNS certificate: {e}"));
    let key_pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CERT_COMMON_NAME);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Ferry");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2120, 1, 1);
    let serial: [u8; 16] = rand::random();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial[..]));
    Ok(params.self_signed(&key_pair).map_err(err)?.pem())
}

/// Signs the envelopes of one publish (or one confirmation) with the key, the topic's version and
/// the certificate URL.
pub struct Signer {
    key: Arc<SigningKey>,
    version: SignatureVersion,
    cert_url: String,
}

impl Signer {
    pub fn new(key: Arc<SigningKey>, version: SignatureVersion, cert_url: String) -> Signer {
        Signer {
            key,
            version,
            cert_url,
        }
    }

    /// Adds `SignatureVersion`, `Signature` and `SigningCertURL` to each envelope. Each distinct
    /// string to sign is signed once (a fan-out's Notifications differ only in the unsigned
    /// `UnsubscribeURL`), on a blocking thread: the calling task only waits.
    pub async fn sign_envelopes(
        &self,
        envelopes: Vec<&mut Map<String, Value>>,
    ) -> Result<(), BrokerError> {
        if envelopes.is_empty() {
            return Ok(());
        }
        let mut texts: Vec<String> = Vec::new();
        let mut which = Vec::with_capacity(envelopes.len());
        for e in &envelopes {
            let text = string_to_sign(e);
            let i = match texts.iter().position(|t| *t == text) {
                Some(i) => i,
                None => {
                    texts.push(text);
                    texts.len() - 1
                }
            };
            which.push(i);
        }
        let signatures = self.key.sign_off_runtime(self.version, texts).await?;
        for (envelope, i) in envelopes.into_iter().zip(which) {
            envelope.insert(
                "SignatureVersion".into(),
                Value::String(self.version.as_str().into()),
            );
            envelope.insert("Signature".into(), Value::String(signatures[i].clone()));
            envelope.insert(
                "SigningCertURL".into(),
                Value::String(self.cert_url.clone()),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::signature::{Keypair, Verifier};
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn notification_string_to_sign_has_fixed_order_and_optional_subject() {
        let with_subject = map(json!({
            "Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:0:t",
            "Subject": "Hi", "Message": "line one\nline two", "Timestamp": "2026-12-05T15:00:00.000Z",
            "UnsubscribeURL": "http://x/?Action=Unsubscribe", "SignatureVersion": "1",
        }));
        assert_eq!(
            string_to_sign(&with_subject),
            "Message\nline one\nline two\nMessageId\nm-1\nSubject\nHi\n\
             Timestamp\n2026-12-05T15:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:0:t\n\
             Type\nNotification\n"
        );
        let mut without = with_subject.clone();
        without.remove("Subject");
        assert_eq!(
            string_to_sign(&without),
            "Message\nline one\nline two\nMessageId\nm-1\n\
             Timestamp\n2026-12-05T15:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:0:t\n\
             Type\nNotification\n"
        );
    }

    #[test]
    fn confirmation_string_to_sign_covers_token_and_subscribe_url() {
        for kind in ["SubscriptionConfirmation", "UnsubscribeConfirmation"] {
            let m = map(json!({
                "Type": kind, "MessageId": "m", "Token": "tok", "TopicArn": "arn",
                "Message": "You have chosen", "SubscribeURL": "http://x/?Action=ConfirmSubscription",
                "Timestamp": "2026-12-05T15:00:00.000Z",
            }));
            assert_eq!(
                string_to_sign(&m),
                format!(
                    "Message\nYou have chosen\nMessageId\nm\n\
                     SubscribeURL\nhttp://x/?Action=ConfirmSubscription\n\
                     Timestamp\n2026-12-05T15:00:00.000Z\nToken\ntok\nTopicArn\narn\nType\n{kind}\n"
                )
            );
        }
    }

    #[test]
    fn versions() {
        assert_eq!(SignatureVersion::parse("1"), Ok(SignatureVersion::V1));
        assert_eq!(SignatureVersion::parse("2"), Ok(SignatureVersion::V2));
        for bad in ["", "0", "3", "v1", " 1"] {
            assert!(SignatureVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_is_persisted_and_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let a = SigningKey::load_or_create(dir.path()).unwrap();
        let b = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        assert_eq!(a.cert_file_name(), b.cert_file_name());
        assert!(a.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        // Signed with the key read back from disk, verified with the one generated.
        let sha1 = a.sha1.verifying_key();
        let sha256 =
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(a.sha1.as_ref().to_public_key());
        // The keys this module makes are signed with ring under version 2.
        assert!(matches!(b.sha256, Sha256Key::Ring(_)));
        let data = b"Message\nhello\n";
        let decode = |s: String| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
            rsa::pkcs1v15::Signature::try_from(&bytes[..]).unwrap()
        };
        let v1 = decode(b.sign(SignatureVersion::V1, data));
        let v2 = decode(b.sign(SignatureVersion::V2, data));
        sha1.verify(data, &v1).unwrap();
        sha256.verify(data, &v2).unwrap();
        assert!(sha256.verify(data, &v1).is_err());
        assert!(sha1.verify(b"Message\nhellO\n", &v1).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn envelopes_are_signed_off_the_runtime_once_per_distinct_text() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(SigningKey::load_or_create(dir.path()).unwrap());
        assert!(key.max_concurrent() >= 1);
        let verifier =
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.sha1.as_ref().to_public_key());
        let signer = Signer::new(key, SignatureVersion::V2, "http://x/c.pem".into());
        let base = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn",
            "Message": "one", "Timestamp": "2026-12-05T15:00:00.000Z"});
        let mut a = map(base.clone());
        a.insert("UnsubscribeURL".into(), json!("http://x/?a"));
        let mut b = map(base.clone());
        b.insert("UnsubscribeURL".into(), json!("http://x/?b"));
        let mut c = map(base);
        c.insert("Message".into(), json!("two"));
        signer
            .sign_envelopes(vec![&mut a, &mut b, &mut c])
            .await
            .unwrap();
        // RSA PKCS#1 v1.5 is deterministic: equal texts, equal signatures.
        assert_eq!(a["Signature"], b["Signature"]);
        assert_ne!(a["Signature"], c["Signature"]);
        for e in [&a, &c] {
            assert_eq!(e["SignatureVersion"], "2");
            assert_eq!(e["SigningCertURL"], "http://x/c.pem");
            let sig = e["Signature"].as_str().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(sig)
                .unwrap();
            let sig = rsa::pkcs1v15::Signature::try_from(&bytes[..]).unwrap();
            verifier.verify(string_to_sign(e).as_bytes(), &sig).unwrap();
        }
    }
}
