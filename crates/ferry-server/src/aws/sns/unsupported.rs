//! SNS actions Ferry does not implement (SMS, mobile push, email, data protection): each answers
//! with a clear error in SNS's format instead of "unknown action".

use axum::http::StatusCode;

use super::SnsError;

pub const ACTIONS: &[&str] = &[
    "CheckIfPhoneNumberIsOptedOut",
    "CreatePlatformApplication",
    "CreatePlatformEndpoint",
    "CreateSMSSandboxPhoneNumber",
    "DeleteEndpoint",
    "DeletePlatformApplication",
    "DeleteSMSSandboxPhoneNumber",
    "GetDataProtectionPolicy",
    "GetEndpointAttributes",
    "GetPlatformApplicationAttributes",
    "GetSMSAttributes",
    "GetSMSSandboxAccountStatus",
    "ListEndpointsByPlatformApplication",
    "ListOriginationNumbers",
    "ListPhoneNumbersOptedOut",
    "ListPlatformApplications",
    "ListSMSSandboxPhoneNumbers",
    "OptInPhoneNumber",
    "PutDataProtectionPolicy",
    "SetEndpointAttributes",
    "SetPlatformApplicationAttributes",
    "SetSMSAttributes",
    "VerifySMSSandboxPhoneNumber",
];

pub fn error(action: &str) -> SnsError {
    SnsError::new(
        "InvalidAction",
        StatusCode::BAD_REQUEST,
        format!("{action} is not supported by Ferry: SMS, mobile push, email and data protection are not implemented (topics deliver to SQS queues and HTTP/HTTPS endpoints)."),
    )
}
