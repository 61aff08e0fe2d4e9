//! AWS Signature Version 4 verification, header and presigned (query-string) forms.
//!
//! ```text
//! canonical request = METHOD \n canonical URI \n canonical query \n
//!                     canonical headers \n signed headers \n payload hash
//! string to sign    = "AWS4-HMAC-SHA256" \n amz-date \n scope \n hex(sha256(canonical request))
//! scope             = date/region/service/aws4_request
//! signing key       = HMAC("AWS4"+secret, date) → region → service → "aws4_request"
//! signature         = hex(HMAC(signing key, string to sign))
//! ```
//!
//! The region and service are taken from the client's credential scope, as AWS computes the
//! signature over what the client claims; the signature then proves the client knew the secret.

use axum::http::{HeaderMap, Method, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::errors::{AwsError, ErrorKind};
use crate::config::AwsSettings;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest accepted clock difference between a signed request and the server.
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;
/// Longest presigned URL lifetime (7 days), as AWS.
pub const MAX_PRESIGN_EXPIRES_SECS: i64 = 7 * 24 * 3600;

/// What a verified request proves: the access key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
}

/// The signature parts of a request, from the Authorization header or the query string.
struct Signed {
    access_key_id: String,
    scope: String,
    date: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    presigned: bool,
    expires: Option<i64>,
}

fn sig_error(msg: impl Into<String>) -> AwsError {
    AwsError::new(ErrorKind::SignatureDoesNotMatch, msg)
}

fn incomplete(msg: impl Into<String>) -> AwsError {
    AwsError::new(ErrorKind::IncompleteSignature, msg)
}

/// True when the request carries any signature (header or presigned form).
pub fn is_signed(headers: &HeaderMap, uri: &Uri) -> bool {
    headers.contains_key("authorization")
        || query_pairs(uri)
            .iter()
            .any(|(k, _)| k == "X-Amz-Signature" || k == "X-Amz-Credential")
}

/// The access key id the request claims, without verifying anything (open mode's SenderId).
pub fn claimed_access_key(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    parse(headers, uri).ok().map(|s| s.access_key_id)
}

/// Verifies the request's signature against the configured credentials at `now_secs`.
pub fn verify(
    settings: &AwsSettings,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, AwsError> {
    if !is_signed(headers, uri) {
        return Err(AwsError::new(
            ErrorKind::MissingAuthenticationToken,
            "Request is missing Authentication Token",
        ));
    }
    let s = parse(headers, uri)?;
    let secret = settings
        .credentials
        .iter()
        .find(|c| c.access_key_id == s.access_key_id)
        .map(|c| c.secret_access_key.clone())
        .ok_or_else(|| {
            AwsError::new(
                ErrorKind::InvalidClientTokenId,
                "The security token included in the request is invalid.",
            )
        })?;
    let request_time = parse_amz_date(&s.amz_date).ok_or_else(|| {
        incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'.",
            s.amz_date
        ))
    })?;
    if s.presigned {
        let expires = s.expires.unwrap_or(MAX_PRESIGN_EXPIRES_SECS);
        if now_secs > request_time + expires {
            return Err(AwsError::new(
                ErrorKind::RequestExpired,
                "Request has expired.",
            ));
        }
        if request_time - now_secs > MAX_CLOCK_SKEW_SECS {
            return Err(sig_error("Signature not yet current."));
        }
    } else if (now_secs - request_time).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(sig_error(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            s.amz_date,
            format_amz_date(now_secs - MAX_CLOCK_SKEW_SECS),
            format_amz_date(now_secs)
        )));
    }
    if !s.amz_date.starts_with(&s.date) {
        return Err(sig_error("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP."));
    }
    // The payload hash: the client's X-Amz-Content-SHA256 when it sent one, else the body's.
    // Presigned URLs are signed either over the (empty) body, as botocore does, or over
    // UNSIGNED-PAYLOAD, as other SDKs do; both are accepted.
    let declared = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut candidates = vec![declared.unwrap_or_else(|| hex::encode(Sha256::digest(body)))];
    if s.presigned {
        candidates.push("UNSIGNED-PAYLOAD".to_string());
    }
    let mut parts = s.scope.split('/');
    let (date, region, service) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let key = signing_key(&secret, date, region, service);
    let matches = |payload_hash: &str| -> Result<bool, AwsError> {
        let canonical = canonical_request(
            method,
            uri,
            headers,
            &s.signed_headers,
            payload_hash,
            s.presigned,
        )?;
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            s.amz_date,
            s.scope,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        Ok(constant_time_eq(
            expected.as_bytes(),
            s.signature.as_bytes(),
        ))
    };
    let mut ok = false;
    for c in &candidates {
        if matches(c)? {
            ok = true;
            break;
        }
    }
    if !ok {
        return Err(sig_error(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(Verified {
        access_key_id: s.access_key_id,
    })
}

fn parse(headers: &HeaderMap, uri: &Uri) -> Result<Signed, AwsError> {
    if let Some(auth) = headers.get("authorization") {
        let auth = auth
            .to_str()
            .map_err(|_| incomplete("Authorization header is not valid text"))?;
        let rest = auth.strip_prefix(ALGORITHM).ok_or_else(|| {
            incomplete(format!(
                "Unsupported authorization scheme; expected {ALGORITHM}"
            ))
        })?;
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v.to_string());
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(v.to_string());
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v.to_string());
            }
        }
        let (Some(credential), Some(signed_headers), Some(signature)) =
            (credential, signed_headers, signature)
        else {
            return Err(incomplete(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
            ));
        };
        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
        let (access_key_id, scope, date) = split_credential(&credential)?;
        Ok(Signed {
            access_key_id,
            scope,
            date,
            signed_headers: signed_headers.split(';').map(str::to_string).collect(),
            signature,
            amz_date,
            presigned: false,
            expires: None,
        })
    } else {
        let q = query_pairs(uri);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let need = |k: &str| {
            get(k).ok_or_else(|| {
                incomplete(format!(
                    "Query-string authentication requires the {k} parameter."
                ))
            })
        };
        if need("X-Amz-Algorithm")? != ALGORITHM {
            return Err(incomplete(format!("X-Amz-Algorithm must be {ALGORITHM}")));
        }
        let (access_key_id, scope, date) = split_credential(&need("X-Amz-Credential")?)?;
        let expires = match get("X-Amz-Expires") {
            Some(e) => Some(
                e.parse::<i64>()
                    .map_err(|_| incomplete("X-Amz-Expires must be a number of seconds"))?,
            ),
            None => None,
        };
        Ok(Signed {
            access_key_id,
            scope,
            date,
            signed_headers: need("X-Amz-SignedHeaders")?
                .split(';')
                .map(str::to_string)
                .collect(),
            signature: need("X-Amz-Signature")?,
            amz_date: need("X-Amz-Date")?,
            presigned: true,
            expires,
        })
    }
}

/// `AKID/20240101/us-east-1/sqs/aws4_request` → (key, scope, date).
fn split_credential(c: &str) -> Result<(String, String, String), AwsError> {
    let (key, scope) = c.split_once('/').ok_or_else(|| {
        incomplete(format!(
            "Credential should be scoped to a valid region, not '{c}'."
        ))
    })?;
    let parts: Vec<&str> = scope.split('/').collect();
    if parts.len() != 4 || parts[3] != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{scope}'."
        )));
    }
    Ok((key.to_string(), scope.to_string(), parts[0].to_string()))
}

fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &[String],
    payload_hash: &str,
    presigned: bool,
) -> Result<String, AwsError> {
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    let canonical_uri = encode(path, false);
    let mut q: Vec<(String, String)> = query_pairs(uri)
        .into_iter()
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| (encode(&k, true), encode(&v, true)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| collapse(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() {
            return Err(sig_error(format!(
                "Signed header {name} is missing from the request."
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
        signed.join(";")
    ))
}

/// Trims and collapses runs of spaces, as SigV4 canonical header values.
fn collapse(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decoded query pairs (`+` is a space, as form encoding).
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    match uri.query() {
        Some(q) => form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        None => Vec::new(),
    }
}

/// SigV4 URI encoding: unreserved characters stay, everything else is %XX (upper case);
/// `/` stays in paths.
fn encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// HMAC-SHA256.
pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The SigV4 signing key: HMAC("AWS4"+secret, date) → region → service → "aws4_request".
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `20240101T120000Z` → seconds since the epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u8>().ok();
    let year = s.get(0..4)?.parse::<i32>().ok()?;
    let month = time::Month::try_from(num(4..6)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, num(6..8)?).ok()?;
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if ss > 60 {
        return None;
    }
    // A leap second (:60) counts as the next second.
    let clock = time::Time::from_hms(hh, mm, ss.min(59)).ok()?;
    Some(date.with_time(clock).assume_utc().unix_timestamp() + i64::from(ss.saturating_sub(59)))
}

/// Seconds since the epoch → `20240101T120000Z`.
pub fn format_amz_date(secs: i64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AwsCredential;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(format_amz_date(0), "19700101T000000Z");
        assert_eq!(format_amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(format_amz_date(4_102_444_799), "20991231T235959Z");
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
        assert_eq!(parse_amz_date("20150830T123660Z"), Some(1_440_938_220));
        assert_eq!(parse_amz_date("20150830T123661Z"), None);
        assert_eq!(parse_amz_date("20150230T000000Z"), None);
        assert_eq!(parse_amz_date("20151330T000000Z"), None);
        assert_eq!(parse_amz_date("2015-08-30"), None);
    }

    /// The "get-vanilla-query-order-key-case" example of AWS's SigV4 test suite, whose
    /// published signature is b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500.
    #[test]
    fn matches_the_aws_test_suite_vector() {
        let settings = AwsSettings {
            credentials: vec![AwsCredential {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                account_id: None,
                user: None,
            }],
            ..AwsSettings::default()
        };
        let uri: Uri = "/?Param2=value2&Param1=value1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
                .parse()
                .unwrap(),
        );
        let now = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(
            verify(&settings, &Method::GET, &uri, &headers, b"", now),
            Ok(Verified {
                access_key_id: "AKIDEXAMPLE".into()
            })
        );
        let err = verify(&settings, &Method::POST, &uri, &headers, b"", now).unwrap_err();
        assert_eq!(err.kind, ErrorKind::SignatureDoesNotMatch);
        let err = verify(&settings, &Method::GET, &uri, &headers, b"", now + 16 * 60).unwrap_err();
        assert_eq!(err.kind, ErrorKind::SignatureDoesNotMatch);
        assert!(
            err.message.starts_with("Signature expired"),
            "{}",
            err.message
        );
    }
}
