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

use crate::BrokerError;
use base64::Engine;
use parking_lot::Mutex;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde_json::{Map, Value};
use sha2::Digest;
use std::path::Path;
use std::sync::Arc;

/// Size of the generated key.
pub const KEY_BITS: usize = 2048;
/// Folder under `<data_dir>/topics` holding the key and certificate.
pub const SIGNING_DIR: &str = "signing";
const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";
/// Subject common name of the self-signed certificate.
const CERT_COMMON_NAME: &str = "Ferry Simple Notification Service";
/// Most distinct strings a [`Signer`] remembers (one per per-protocol message of a publish).
const MEMO_ENTRIES: usize = 4;

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

/// The server's signing key and its certificate.
pub struct SigningKey {
    sha1: rsa::pkcs1v15::SigningKey<sha1::Sha1>,
    sha256: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    cert_pem: String,
    cert_file_name: String,
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
        SigningKey {
            sha1: rsa::pkcs1v15::SigningKey::new(key.clone()),
            sha256: rsa::pkcs1v15::SigningKey::new(key),
            cert_pem,
            cert_file_name,
        }
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

    /// The base64 signature of `data` (RSA PKCS#1 v1.5, blinded).
    pub fn sign(&self, version: SignatureVersion, data: &[u8]) -> String {
        let mut rng = rand::thread_rng();
        let bytes = match version {
            SignatureVersion::V1 => self.sha1.sign_with_rng(&mut rng, data).to_vec(),
            SignatureVersion::V2 => self.sha256.sign_with_rng(&mut rng, data).to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(bytes)
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

/// Signs the envelopes of one publish (or one confirmation): the key, the topic's version, the
/// certificate URL, and a memo so a fan-out signs each distinct string once (a Notification's
/// signature does not cover its per-subscription `UnsubscribeURL`).
pub struct Signer {
    key: Arc<SigningKey>,
    version: SignatureVersion,
    cert_url: String,
    memo: Mutex<Vec<(String, String)>>,
}

impl Signer {
    pub fn new(key: Arc<SigningKey>, version: SignatureVersion, cert_url: String) -> Signer {
        Signer {
            key,
            version,
            cert_url,
            memo: Mutex::new(Vec::new()),
        }
    }

    /// Adds `SignatureVersion`, `Signature` and `SigningCertURL` to `envelope`.
    pub fn sign_envelope(&self, envelope: &mut Map<String, Value>) {
        let text = string_to_sign(envelope);
        let known = self
            .memo
            .lock()
            .iter()
            .find(|(t, _)| *t == text)
            .map(|(_, s)| s.clone());
        let signature = match known {
            Some(s) => s,
            None => {
                let s = self.key.sign(self.version, text.as_bytes());
                let mut memo = self.memo.lock();
                if memo.len() < MEMO_ENTRIES {
                    memo.push((text, s.clone()));
                }
                s
            }
        };
        envelope.insert(
            "SignatureVersion".into(),
            Value::String(self.version.as_str().into()),
        );
        envelope.insert("Signature".into(), Value::String(signature));
        envelope.insert(
            "SigningCertURL".into(),
            Value::String(self.cert_url.clone()),
        );
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
        let sha256 = a.sha256.verifying_key();
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
}
