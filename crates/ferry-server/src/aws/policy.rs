//! AWS access policies: the resource policy of a queue (the SQS `Policy` attribute), parsed and
//! checked when it is set, and evaluated for requests signed with a configured key.
//!
//! Evaluation follows IAM's rules for a resource policy on its own (Ferry has no identity
//! policies): a matching `Deny` statement wins; otherwise a matching `Allow` grants; otherwise
//! nothing is granted. A statement matches when its principal, action, resource and every
//! condition match the request.
//!
//! Supported: `Principal`/`NotPrincipal` (`"*"`, account ids, `arn:aws:iam::<account>:root`,
//! `arn:aws:iam::<account>:user/<name>`; `Service` and other principal kinds are accepted and
//! never match a key), `Action`/`NotAction` and `Resource`/`NotResource` with `*` and `?`
//! wildcards, and the condition operators of IAM (String*, Numeric*, Date*, Bool, IpAddress,
//! NotIpAddress, Arn*, Null; the `IfExists` suffix; the `ForAnyValue:`/`ForAllValues:`
//! qualifiers) over the keys listed in [`context_value`]. A policy using anything else is
//! refused when set, so no condition is ever silently ignored.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::config::is_account_id;

/// Who signed a request: an account's root, or an IAM user of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account: String,
    pub user: Option<String>,
}

impl Principal {
    pub fn arn(&self) -> String {
        match &self.user {
            Some(u) => format!("arn:aws:iam::{}:user/{u}", self.account),
            None => format!("arn:aws:iam::{}:root", self.account),
        }
    }
}

/// One permission a request needs: `action` (`sqs:SendMessage`) on `resource` (an ARN).
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub action: &'a str,
    pub resource: &'a str,
    pub source_ip: IpAddr,
    /// Seconds since the Unix epoch.
    pub now_secs: i64,
    pub secure_transport: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A `Deny` statement matched.
    Deny,
    /// An `Allow` statement matched and no `Deny` did.
    Allow,
    /// No statement matched.
    NotGranted,
}

impl Decision {
    /// Whether the request may go ahead: the resource's owner unless a statement denies it,
    /// anyone else only when a statement allows it (and none denies it).
    pub fn permits(self, owner: bool) -> bool {
        match self {
            Decision::Deny => false,
            Decision::Allow => true,
            Decision::NotGranted => owner,
        }
    }
}

/// What `policy` (None: the resource has none Ferry can read) says of `r`.
pub fn decide(policy: Option<&Policy>, r: &Request<'_>) -> Decision {
    policy.map_or(Decision::NotGranted, |p| p.evaluate(r))
}

/// A parsed, checked policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    principals: Matcher<PrincipalPattern>,
    actions: Matcher<String>,
    /// None: the statement applies to the resource that holds the policy.
    resources: Option<Matcher<String>>,
    conditions: Vec<Condition>,
}

/// A list of patterns, or (for the `Not…` elements) everything but them.
#[derive(Debug, Clone)]
struct Matcher<T> {
    negated: bool,
    items: Vec<T>,
}

impl<T> Matcher<T> {
    fn matches(&self, f: impl Fn(&T) -> bool) -> bool {
        self.items.iter().any(f) != self.negated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalPattern {
    Anyone,
    Account(String),
    Arn(String),
    /// A service, federated or canonical-user principal: never one of Ferry's keys.
    NotAKey,
}

#[derive(Debug, Clone)]
struct Condition {
    test: Test,
    negated: bool,
    if_exists: bool,
    qualifier: Qualifier,
    /// Lower case: condition keys are case-insensitive.
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    StringEquals {
        ignore_case: bool,
    },
    StringLike,
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    Ip,
    /// ArnEquals and ArnLike (IAM treats them alike: wildcards in the policy's value).
    Arn,
    Null,
}

/// The operator names of IAM: the test, and whether it is negated.
fn operator(name: &str) -> Option<(Test, bool)> {
    use Cmp::*;
    Some(match name {
        "StringEquals" => (Test::StringEquals { ignore_case: false }, false),
        "StringNotEquals" => (Test::StringEquals { ignore_case: false }, true),
        "StringEqualsIgnoreCase" => (Test::StringEquals { ignore_case: true }, false),
        "StringNotEqualsIgnoreCase" => (Test::StringEquals { ignore_case: true }, true),
        "StringLike" => (Test::StringLike, false),
        "StringNotLike" => (Test::StringLike, true),
        "NumericEquals" => (Test::Numeric(Eq), false),
        "NumericNotEquals" => (Test::Numeric(Eq), true),
        "NumericLessThan" => (Test::Numeric(Lt), false),
        "NumericLessThanEquals" => (Test::Numeric(Le), false),
        "NumericGreaterThan" => (Test::Numeric(Gt), false),
        "NumericGreaterThanEquals" => (Test::Numeric(Ge), false),
        "DateEquals" => (Test::Date(Eq), false),
        "DateNotEquals" => (Test::Date(Eq), true),
        "DateLessThan" => (Test::Date(Lt), false),
        "DateLessThanEquals" => (Test::Date(Le), false),
        "DateGreaterThan" => (Test::Date(Gt), false),
        "DateGreaterThanEquals" => (Test::Date(Ge), false),
        "Bool" => (Test::Bool, false),
        "IpAddress" => (Test::Ip, false),
        "NotIpAddress" => (Test::Ip, true),
        "ArnEquals" | "ArnLike" => (Test::Arn, false),
        "ArnNotEquals" | "ArnNotLike" => (Test::Arn, true),
        "Null" => (Test::Null, false),
        _ => return None,
    })
}

/// Why a document is not a policy Ferry can enforce.
pub type Invalid = String;

fn strings(v: &Value, what: &str) -> Result<Vec<String>, Invalid> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{what} must be a string or a list of strings.")),
    };
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(one).collect(),
        Value::Array(_) => Err(format!("{what} must not be empty.")),
        other => Ok(vec![one(other)?]),
    }
}

fn principal_pattern(s: &str) -> Result<PrincipalPattern, Invalid> {
    if s == "*" {
        return Ok(PrincipalPattern::Anyone);
    }
    if is_account_id(s) {
        return Ok(PrincipalPattern::Account(s.to_string()));
    }
    if let Some(rest) = s.strip_prefix("arn:aws:iam::") {
        if let Some((account, resource)) = rest.split_once(':') {
            if is_account_id(account) && !resource.is_empty() {
                return Ok(if resource == "root" {
                    PrincipalPattern::Account(account.to_string())
                } else {
                    PrincipalPattern::Arn(s.to_string())
                });
            }
        }
    }
    Err(format!("Invalid principal in policy: {s:?}."))
}

fn principals(v: &Value) -> Result<Vec<PrincipalPattern>, Invalid> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![PrincipalPattern::Anyone]),
        Value::Object(m) if !m.is_empty() => {
            let mut out = Vec::new();
            for (kind, ids) in m {
                let ids = strings(ids, "Principal")?;
                match kind.as_str() {
                    "AWS" => {
                        for id in ids {
                            out.push(principal_pattern(&id)?);
                        }
                    }
                    "Service" | "Federated" | "CanonicalUser" => {
                        out.push(PrincipalPattern::NotAKey)
                    }
                    other => return Err(format!("Invalid principal type in policy: {other:?}.")),
                }
            }
            Ok(out)
        }
        _ => {
            Err("Principal must be \"*\" or an object such as {\"AWS\": \"<account id>\"}.".into())
        }
    }
}

fn actions(v: &Value) -> Result<Vec<String>, Invalid> {
    let list = strings(v, "Action")?;
    for a in &list {
        let valid = a == "*"
            || a.split_once(':').is_some_and(|(service, name)| {
                !service.is_empty()
                    && service
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !name.is_empty()
            });
        if !valid {
            return Err(format!(
                "Invalid action in policy: {a:?} (expected service:Action, such as sqs:SendMessage)."
            ));
        }
    }
    Ok(list.into_iter().map(|a| a.to_ascii_lowercase()).collect())
}

fn resources(v: &Value) -> Result<Vec<String>, Invalid> {
    let list = strings(v, "Resource")?;
    for r in &list {
        if r != "*" && !r.starts_with("arn:") {
            return Err(format!(
                "Invalid resource in policy: {r:?} (expected an ARN or \"*\")."
            ));
        }
    }
    Ok(list)
}

fn check_value(test: Test, value: &str) -> Result<(), Invalid> {
    let ok = match test {
        Test::Numeric(_) => value.parse::<f64>().is_ok(),
        Test::Date(_) => date_secs(value).is_some(),
        Test::Bool | Test::Null => {
            value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
        }
        Test::Ip => ip_net(value).is_some(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("Invalid value in a policy condition: {value:?}."))
    }
}

fn conditions(v: &Value) -> Result<Vec<Condition>, Invalid> {
    let Value::Object(ops) = v else {
        return Err("Condition must be an object.".into());
    };
    let mut out = Vec::new();
    for (name, block) in ops {
        let (qualifier, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (Qualifier::ForAnyValue, r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (Qualifier::ForAllValues, r)
        } else {
            (Qualifier::Single, name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let Some((test, negated)) = operator(base) else {
            return Err(format!(
                "Unsupported condition operator in policy: {name:?}."
            ));
        };
        if test == Test::Null && (if_exists || qualifier != Qualifier::Single) {
            return Err(format!(
                "Unsupported condition operator in policy: {name:?}."
            ));
        }
        let Value::Object(keys) = block else {
            return Err(format!("Condition {name:?} must map keys to values."));
        };
        if keys.is_empty() {
            return Err(format!("Condition {name:?} names no key."));
        }
        for (key, values) in keys {
            let values = strings(values, "A condition value")?;
            for value in &values {
                check_value(test, value)?;
            }
            out.push(Condition {
                test,
                negated,
                if_exists,
                qualifier,
                key: key.to_ascii_lowercase(),
                values,
            });
        }
    }
    Ok(out)
}

/// Takes `a` or its negated twin `not_a` from a statement; exactly one may be there.
fn one_of<'a>(
    st: &'a Map<String, Value>,
    a: &str,
    not_a: &str,
) -> Result<Option<(bool, &'a Value)>, Invalid> {
    match (st.get(a), st.get(not_a)) {
        (Some(_), Some(_)) => Err(format!("A statement may have {a} or {not_a}, not both.")),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

fn statement(v: &Value) -> Result<Statement, Invalid> {
    let Value::Object(st) = v else {
        return Err("Each statement must be an object.".into());
    };
    for key in st.keys() {
        let known = [
            "Sid",
            "Effect",
            "Principal",
            "NotPrincipal",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
        ];
        if !known.contains(&key.as_str()) {
            return Err(format!("Unknown field in a policy statement: {key:?}."));
        }
    }
    if st.get("Sid").is_some_and(|s| !s.is_string()) {
        return Err("Sid must be a string.".into());
    }
    let allow = match st.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err("Effect must be \"Allow\" or \"Deny\".".into()),
    };
    let (negated, p) =
        one_of(st, "Principal", "NotPrincipal")?.ok_or("Each statement must name a Principal.")?;
    let principals = Matcher {
        negated,
        items: principals(p)?,
    };
    let (negated, a) =
        one_of(st, "Action", "NotAction")?.ok_or("Each statement must name an Action.")?;
    let actions = Matcher {
        negated,
        items: actions(a)?,
    };
    let resources = match one_of(st, "Resource", "NotResource")? {
        Some((negated, r)) => Some(Matcher {
            negated,
            items: resources(r)?,
        }),
        None => None,
    };
    let conditions = match st.get("Condition") {
        Some(c) => conditions(c)?,
        None => Vec::new(),
    };
    Ok(Statement {
        allow,
        principals,
        actions,
        resources,
        conditions,
    })
}

impl Policy {
    /// Parses and checks a policy document (JSON text).
    pub fn parse(text: &str) -> Result<Policy, Invalid> {
        let doc: Value =
            serde_json::from_str(text).map_err(|_| "The policy is not a valid JSON document.")?;
        let Value::Object(doc) = doc else {
            return Err("The policy must be a JSON object.".into());
        };
        for key in doc.keys() {
            if !["Version", "Id", "Statement"].contains(&key.as_str()) {
                return Err(format!("Unknown field in the policy: {key:?}."));
            }
        }
        match doc.get("Version") {
            None => {}
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
            Some(_) => return Err("Version must be \"2012-10-17\" or \"2008-10-17\".".into()),
        }
        if doc.get("Id").is_some_and(|s| !s.is_string()) {
            return Err("Id must be a string.".into());
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(a)) => a.iter().map(statement).collect::<Result<_, _>>()?,
            Some(one @ Value::Object(_)) => vec![statement(one)?],
            _ => return Err("The policy must have a Statement (an object or a list).".into()),
        };
        Ok(Policy { statements })
    }

    /// What this policy says of one request.
    pub fn evaluate(&self, r: &Request<'_>) -> Decision {
        let principal_arn = r.principal.arn();
        let action = r.action.to_ascii_lowercase();
        let mut allowed = false;
        for st in &self.statements {
            if st.applies(r, &principal_arn, &action) {
                if !st.allow {
                    return Decision::Deny;
                }
                allowed = true;
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NotGranted
        }
    }
}

impl Statement {
    /// `principal_arn` and `action` (lower case) are the request's, computed once per request.
    fn applies(&self, r: &Request<'_>, principal_arn: &str, action: &str) -> bool {
        self.principals.matches(|p| match p {
            PrincipalPattern::Anyone => true,
            PrincipalPattern::Account(a) => *a == r.principal.account,
            PrincipalPattern::Arn(arn) => arn == principal_arn,
            PrincipalPattern::NotAKey => false,
        }) && self.actions.matches(|a| wildcard(a, action))
            && self
                .resources
                .as_ref()
                .is_none_or(|m| m.matches(|p| wildcard(p, r.resource)))
            && self.conditions.iter().all(|c| c.holds(r))
    }
}

/// The request's value of a condition key (lower case), if it has one. Keys Ferry's requests
/// never carry (`aws:SourceArn`, `aws:SourceAccount`, …) are absent.
fn context_value(key: &str, r: &Request<'_>) -> Option<String> {
    Some(match key {
        "aws:sourceip" => r.source_ip.to_canonical().to_string(),
        "aws:securetransport" => r.secure_transport.to_string(),
        "aws:currenttime" => time::OffsetDateTime::from_unix_timestamp(r.now_secs)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })?,
        "aws:epochtime" => r.now_secs.to_string(),
        "aws:principalaccount" => r.principal.account.clone(),
        "aws:principalarn" => r.principal.arn(),
        "aws:principaltype" => match r.principal.user {
            Some(_) => "User".into(),
            None => "Account".into(),
        },
        "aws:username" => r.principal.user.clone()?,
        _ => return None,
    })
}

impl Condition {
    fn holds(&self, r: &Request<'_>) -> bool {
        let value = context_value(&self.key, r);
        if self.test == Test::Null {
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return value.is_none() == want_absent;
        }
        let Some(value) = value else {
            return match self.qualifier {
                Qualifier::ForAllValues => true,
                Qualifier::ForAnyValue => false,
                Qualifier::Single => self.if_exists || self.negated,
            };
        };
        // Every key Ferry supplies has one value, so both qualifiers reduce to that value.
        self.values.iter().any(|p| self.test.matches(p, &value)) != self.negated
    }
}

impl Test {
    /// Whether the request's `value` matches the policy's `pattern`.
    fn matches(self, pattern: &str, value: &str) -> bool {
        match self {
            Test::StringEquals { ignore_case: false } => pattern == value,
            Test::StringEquals { ignore_case: true } => pattern.eq_ignore_ascii_case(value),
            Test::StringLike | Test::Arn => wildcard(pattern, value),
            Test::Numeric(cmp) => match (value.parse::<f64>(), pattern.parse::<f64>()) {
                (Ok(v), Ok(p)) => compare(cmp, v, p),
                _ => false,
            },
            Test::Date(cmp) => match (date_secs(value), date_secs(pattern)) {
                (Some(v), Some(p)) => compare(cmp, v, p),
                _ => false,
            },
            Test::Bool => pattern.eq_ignore_ascii_case(value),
            Test::Ip => match (value.parse::<IpAddr>(), ip_net(pattern)) {
                (Ok(ip), Some(net)) => net.contains(&ip.to_canonical()),
                _ => false,
            },
            Test::Null => false,
        }
    }
}

fn compare<T: PartialOrd>(cmp: Cmp, v: T, p: T) -> bool {
    match cmp {
        Cmp::Eq => v == p,
        Cmp::Lt => v < p,
        Cmp::Le => v <= p,
        Cmp::Gt => v > p,
        Cmp::Ge => v >= p,
    }
}

/// A date as IAM accepts it: epoch seconds, an RFC 3339 time or a bare `YYYY-MM-DD`.
fn date_secs(s: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(n) = s.parse::<i64>() {
        return Some(n as f64);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    time::OffsetDateTime::parse(&full, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp() as f64)
}

/// An address range in CIDR form, or one address.
fn ip_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:orders";

    fn root(account: &str) -> Principal {
        Principal {
            account: account.into(),
            user: None,
        }
    }

    fn request<'a>(principal: &'a Principal, action: &'a str) -> Request<'a> {
        Request {
            principal,
            action,
            resource: QUEUE,
            source_ip: "127.0.0.1".parse().unwrap(),
            now_secs: 1_800_000_000,
            secure_transport: false,
        }
    }

    fn decide(policy: Value, principal: &Principal, action: &str) -> Decision {
        Policy::parse(&policy.to_string())
            .unwrap()
            .evaluate(&request(principal, action))
    }

    fn allow(extra: Value) -> Value {
        let mut st = serde_json::json!({"Effect": "Allow", "Principal": {"AWS": "210987654321"},
            "Action": "sqs:SendMessage", "Resource": QUEUE});
        for (k, v) in extra.as_object().unwrap() {
            st[k] = v.clone();
        }
        serde_json::json!({"Version": "2012-10-17", "Statement": [st]})
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(wildcard("*", ""));
        assert!(wildcard("sqs:send*", "sqs:sendmessage"));
        assert!(wildcard("sqs:*message", "sqs:sendmessage"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard(
            "arn:aws:sqs:*:123456789012:orders-*",
            "arn:aws:sqs:eu-west-1:123456789012:orders-eu"
        ));
        assert!(!wildcard(
            "arn:aws:sqs:*:123456789012:orders-*",
            "arn:aws:sqs:eu-west-1:123456789012:ordersx"
        ));
        assert!(wildcard("*a*b*", "xxaxxbxx"));
        assert!(!wildcard("*a*b", "xxaxxbxx"));
    }

    #[test]
    fn principals_actions_and_resources_must_all_match() {
        let other = root("210987654321");
        let stranger = root("999999999999");
        assert_eq!(
            decide(allow(serde_json::json!({})), &other, "sqs:SendMessage"),
            Decision::Allow
        );
        assert_eq!(
            decide(allow(serde_json::json!({})), &stranger, "sqs:SendMessage"),
            Decision::NotGranted
        );
        assert_eq!(
            decide(allow(serde_json::json!({})), &other, "sqs:ReceiveMessage"),
            Decision::NotGranted
        );
        let elsewhere =
            allow(serde_json::json!({"Resource": "arn:aws:sqs:us-east-1:123456789012:other"}));
        assert_eq!(
            decide(elsewhere, &other, "sqs:SendMessage"),
            Decision::NotGranted
        );
        // Actions are case-insensitive; the account's root ARN names the whole account.
        let p = allow(
            serde_json::json!({"Action": ["SQS:Send*"], "Principal": {"AWS": ["arn:aws:iam::210987654321:root"]}}),
        );
        let alice = Principal {
            account: "210987654321".into(),
            user: Some("alice".into()),
        };
        assert_eq!(decide(p, &alice, "sqs:SendMessage"), Decision::Allow);
        // A user ARN names that user only.
        let p = allow(
            serde_json::json!({"Principal": {"AWS": "arn:aws:iam::210987654321:user/alice"}}),
        );
        assert_eq!(
            decide(p.clone(), &alice, "sqs:SendMessage"),
            Decision::Allow
        );
        assert_eq!(decide(p, &other, "sqs:SendMessage"), Decision::NotGranted);
        // Service principals never match a key.
        let p = allow(serde_json::json!({"Principal": {"Service": "sns.amazonaws.com"}}));
        assert_eq!(decide(p, &other, "sqs:SendMessage"), Decision::NotGranted);
    }

    #[test]
    fn deny_wins_and_not_elements_invert() {
        let owner = root("123456789012");
        let p = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "sqs:*"},
            {"Effect": "Deny", "Principal": "*", "NotAction": ["sqs:ReceiveMessage", "sqs:DeleteMessage"]},
        ]});
        assert_eq!(
            decide(p.clone(), &owner, "sqs:ReceiveMessage"),
            Decision::Allow
        );
        assert_eq!(decide(p, &owner, "sqs:PurgeQueue"), Decision::Deny);
        let p = serde_json::json!({"Statement": {"Effect": "Deny",
            "NotPrincipal": {"AWS": "123456789012"}, "Action": "*", "NotResource": "arn:aws:sqs:*:*:public-*"}});
        assert_eq!(
            decide(p.clone(), &owner, "sqs:SendMessage"),
            Decision::NotGranted
        );
        assert_eq!(
            decide(p, &root("210987654321"), "sqs:SendMessage"),
            Decision::Deny
        );
    }

    #[test]
    fn conditions_on_address_time_account_and_absent_keys() {
        let other = root("210987654321");
        let with = |c: Value| {
            decide(
                allow(serde_json::json!({"Condition": c})),
                &other,
                "sqs:SendMessage",
            )
        };
        assert_eq!(
            with(serde_json::json!({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.1"]}})),
            Decision::NotGranted
        );
        assert_eq!(
            with(serde_json::json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"DateGreaterThan": {"aws:CurrentTime": "2030-01-01"}})),
            Decision::NotGranted
        );
        assert_eq!(
            with(serde_json::json!({"NumericLessThan": {"aws:EpochTime": 1_900_000_000}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"StringEquals": {"aws:PrincipalAccount": "210987654321"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"Bool": {"aws:SecureTransport": "true"}})),
            Decision::NotGranted
        );
        assert_eq!(
            with(
                serde_json::json!({"StringEqualsIgnoreCase": {"AWS:PRINCIPALTYPE": "account"},
                "StringNotEquals": {"aws:PrincipalType": "User"}})
            ),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"StringEquals": {"aws:PrincipalType": "account"}})),
            Decision::NotGranted
        );
        // Two operators, or two keys: all must hold.
        assert_eq!(
            with(serde_json::json!({"Bool": {"aws:SecureTransport": "false"},
            "StringLike": {"aws:PrincipalArn": "arn:aws:iam::9*"}})),
            Decision::NotGranted
        );
        // A key the request lacks: positive operators fail, negated ones and IfExists hold.
        assert_eq!(
            with(serde_json::json!({"ArnEquals": {"aws:SourceArn": "arn:aws:sns:*:*:t"}})),
            Decision::NotGranted
        );
        assert_eq!(
            with(serde_json::json!({"ArnNotEquals": {"aws:SourceArn": "arn:aws:sns:*:*:t"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"ArnEqualsIfExists": {"aws:SourceArn": "arn:aws:sns:*:*:t"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"Null": {"aws:SourceArn": "true"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"Null": {"aws:username": "false"}})),
            Decision::NotGranted
        );
        assert_eq!(
            with(serde_json::json!({"ForAllValues:StringEquals": {"aws:SourceAccount": "1"}})),
            Decision::Allow
        );
        assert_eq!(
            with(serde_json::json!({"ForAnyValue:StringEquals": {"aws:SourceAccount": "1"}})),
            Decision::NotGranted
        );
    }

    #[test]
    fn documents_ferry_cannot_enforce_are_refused() {
        for bad in [
            "not json",
            "[]",
            r#"{"Version": "2012-10-17"}"#,
            r#"{"Statement": [{"Effect": "Allow", "Action": "sqs:*"}]}"#,
            r#"{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "sqs:*"}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*"}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "SendMessage"}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "sqs:*"}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "NotAction": "sqs:x"}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Resource": "orders"}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Condition": {"StringMaybe": {"aws:SourceIp": "x"}}}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Condition": {"IpAddress": {"aws:SourceIp": "not-an-ip"}}}]}"#,
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Extra": 1}]}"#,
            r#"{"Version": "2020-01-01", "Statement": []}"#,
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::parse(r#"{"Version": "2012-10-17", "Statement": []}"#).is_ok());
    }
}
