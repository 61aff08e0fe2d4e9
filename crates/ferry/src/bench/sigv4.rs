//! AWS Signature Version 4 signing of the SQS bench's requests (header form).
//!
//! ```text
//! canonical request = METHOD \n path \n query \n canonical headers \n signed headers \n hex(sha256(body))
//! string to sign    = "AWS4-HMAC-SHA256" \n amz-date \n scope \n hex(sha256(canonical request))
//! scope             = date/region/service/aws4_request
//! signing key       = HMAC("AWS4"+secret, date) → region → service → "aws4_request"
//! Authorization     = AWS4-HMAC-SHA256 Credential=<key id>/<scope>, SignedHeaders=<..>, Signature=<hex>
//! ```
//!
//! The server verifies the same way (`ferry-server/src/aws/sigv4.rs`); the e2e test
//! `bench_sqs_signs_requests_when_the_server_requires_it` proves the two agree.

use ferry_server::aws::sigv4::{hmac, signing_key};
use sha2::{Digest, Sha256};

/// `YYYYMMDDTHHMMSSZ`, as the server formats and parses it.
pub use ferry_server::aws::sigv4::format_amz_date as amz_date;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access key and its secret.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// One request to sign: `headers` are (lower-case name, value), sorted by name, and are all
/// signed; they must include `host` and `x-amz-date`.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The `Authorization` header value for `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn authorization(
    credentials: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    request: &Request<'_>,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let canonical_headers: String = request
        .headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_headers = request
        .headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        request.path,
        request.query,
        hex::encode(Sha256::digest(request.body))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&credentials.secret_access_key, date, region, service);
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 test suite, case `get-vanilla`.
    #[test]
    fn signs_the_aws_test_suite_get_vanilla_case() {
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let request = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
            ],
            body: b"",
        };
        assert_eq!(
            authorization(
                &credentials,
                "us-east-1",
                "service",
                "20150830T123600Z",
                &request
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }
}
