//! SNS subscription filter policies: parse, validate, evaluate.
//!
//! A policy is a JSON object. Every top-level key must match (AND); the values listed for a key
//! are alternatives (OR); `"$or": [ {..}, {..} ]` (two or more objects) is an explicit OR of
//! whole sub-policies. With scope `MessageAttributes` keys name message attributes; with scope
//! `MessageBody` the (JSON object) body is matched and keys may nest:
//!
//! ```text
//! {"store": ["example_corp"],                          exact string
//!  "price": [{"numeric": [">=", 100, "<", 200]}, 5],    numeric range, exact number
//!  "event": [{"prefix": "order-"}, {"suffix": ".png"}, {"equals-ignore-case": "PAID"}],
//!  "region": [{"anything-but": ["us-east-1", "eu-west-1"]}],   also a single value, or
//!                                                      {"anything-but": {"prefix": "x"}}
//!  "source_ip": [{"cidr": "10.0.0.0/24"}],
//!  "coupon": [{"exists": false}],
//!  "$or": [{"a": ["1"]}, {"b": ["2"]}]}
//! ```
//!
//! Matching rules (SNS semantics):
//! - a String attribute is a string, a Number attribute a number, a String.Array attribute
//!   (a JSON array) each of its elements; Binary attributes are never matched (they count as
//!   absent). A body value that is an array is each of its elements, at any depth, and a path
//!   through arrays of objects reaches every element.
//! - a key matches when *any* of its values satisfies *any* of its conditions, except
//!   `{"exists": false}`, which matches when the key is absent.
//! - strings and numbers never match each other: `["5"]` does not match the number 5.
//! - numbers are compared as fixed-point with five decimals, within ±10⁹ (SNS's accuracy).
//!
//! Limits ([`MAX_POLICY_BYTES`], [`MAX_KEYS`], [`MAX_COMBINATIONS`]) follow SNS: the policy is
//! expanded into the AND-only alternatives its `$or`s describe; each alternative may have at
//! most five keys, and the sum over alternatives of the product of the number of values per key
//! must not exceed 150.

use crate::types::MessageAttributeValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Largest filter policy, in bytes of JSON (SNS: 256 KB).
pub const MAX_POLICY_BYTES: usize = 256 * 1024;
/// Most keys in one policy (per `$or` alternative).
pub const MAX_KEYS: usize = 5;
/// Most value combinations (SNS's complexity rule).
pub const MAX_COMBINATIONS: usize = 150;
/// Numeric values must lie within ±this (SNS: ±10⁹).
pub const MAX_NUMERIC: f64 = 1e9;
/// Fixed-point scale: five decimals of accuracy.
const SCALE: f64 = 1e5;
/// Deepest nesting of objects accepted in a body policy.
const MAX_DEPTH: usize = 32;

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum FilterPolicyScope {
    #[default]
    MessageAttributes,
    MessageBody,
}

impl FilterPolicyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterPolicyScope::MessageAttributes => "MessageAttributes",
            FilterPolicyScope::MessageBody => "MessageBody",
        }
    }
    pub fn parse(s: &str) -> Option<FilterPolicyScope> {
        match s {
            "MessageAttributes" => Some(FilterPolicyScope::MessageAttributes),
            "MessageBody" => Some(FilterPolicyScope::MessageBody),
            _ => None,
        }
    }
}

/// Why a policy was refused; `Display` gives SNS's wording after "FilterPolicy: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(s.into()))
}

/// A number in fixed point (value × 10⁵), so that comparisons are exact at five decimals.
type Fixed = i64;

fn to_fixed(x: f64) -> Option<Fixed> {
    if !x.is_finite() || x.abs() > MAX_NUMERIC {
        return None;
    }
    Some((x * SCALE).round() as i64)
}

/// One condition in a key's list.
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Str(String),
    Num(Fixed),
    Bool(bool),
    Null,
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    /// Matches any value not equal to one of these.
    AnythingBut(Vec<Lit>),
    AnythingButPrefix(String),
    AnythingButSuffix(String),
    AnythingButEqualsIgnoreCase(Vec<String>),
    Numeric {
        lower: Option<(Fixed, bool)>,
        upper: Option<(Fixed, bool)>,
        equal: Option<Fixed>,
    },
    Cidr {
        net: IpAddr,
        bits: u8,
    },
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Num(Fixed),
}

/// A key path and its alternatives.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    path: Vec<String>,
    conds: Vec<Cond>,
}

/// AND of fields and of OR-groups.
#[derive(Debug, Clone, PartialEq, Default)]
struct Pattern {
    fields: Vec<Field>,
    ors: Vec<Vec<Pattern>>,
}

/// A parsed, validated filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    scope: FilterPolicyScope,
    root: Pattern,
}

/// A value a condition is tested against.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Str(&'a str),
    Num(Option<Fixed>),
    Bool(bool),
    Null,
}

impl FilterPolicy {
    /// Parses and validates `json` for `scope`.
    pub fn parse(json: &str, scope: FilterPolicyScope) -> Result<FilterPolicy, PolicyError> {
        if json.len() > MAX_POLICY_BYTES {
            return err(format!(
                "Filter policy is too large: {} bytes (at most {MAX_POLICY_BYTES})",
                json.len()
            ));
        }
        let v: Value = serde_json::from_str(json)
            .map_err(|e| PolicyError(format!("failed to parse JSON. {e}")))?;
        let Value::Object(obj) = &v else {
            return err("Filter policy must be a JSON object");
        };
        let root = parse_pattern(obj, &[], scope, 0)?;
        let alts = alternatives(&root);
        let mut total = 0usize;
        for alt in &alts {
            if alt.len() > MAX_KEYS {
                return err(format!(
                    "Filter policy can not have more than {MAX_KEYS} keys"
                ));
            }
            let product = alt.iter().fold(1usize, |acc, n| acc.saturating_mul(*n));
            total = total.saturating_add(product);
        }
        if total > MAX_COMBINATIONS {
            return err(format!(
                "Filter policy is too complex: {total} combinations (at most {MAX_COMBINATIONS})"
            ));
        }
        Ok(FilterPolicy { scope, root })
    }

    pub fn scope(&self) -> FilterPolicyScope {
        self.scope
    }

    /// Evaluates against message attributes (scope `MessageAttributes`).
    pub fn matches_attributes(&self, attributes: &BTreeMap<String, MessageAttributeValue>) -> bool {
        let arrays: BTreeMap<&str, Value> = attributes
            .iter()
            .filter(|(_, a)| a.data_type.starts_with("String.Array"))
            .filter_map(|(k, a)| {
                let v: Value = serde_json::from_str(a.string_value.as_deref()?).ok()?;
                v.is_array().then_some((k.as_str(), v))
            })
            .collect();
        let lookup = |path: &[String]| -> Option<Vec<Val<'_>>> {
            let name = path.first()?;
            let a = attributes.get(name)?;
            let base = a.data_type.split('.').next().unwrap_or("");
            let s = a.string_value.as_deref()?;
            if a.data_type.starts_with("String.Array") {
                let mut out = Vec::new();
                flatten(arrays.get(name.as_str())?, &mut out);
                Some(out)
            } else if base == "String" {
                Some(vec![Val::Str(s)])
            } else if base == "Number" {
                Some(vec![Val::Num(
                    s.trim().parse::<f64>().ok().and_then(to_fixed),
                )])
            } else {
                None
            }
        };
        eval(&self.root, &lookup)
    }

    /// Evaluates against a parsed JSON body (scope `MessageBody`). A body that is not a JSON
    /// object matches nothing (SNS filters such messages out).
    pub fn matches_body(&self, body: Option<&Value>) -> bool {
        let Some(body @ Value::Object(_)) = body else {
            return false;
        };
        let lookup = |path: &[String]| -> Option<Vec<Val<'_>>> {
            let mut nodes = vec![body];
            for key in path {
                let mut next = Vec::new();
                for n in nodes {
                    collect_children(n, key, &mut next);
                }
                if next.is_empty() {
                    return None;
                }
                nodes = next;
            }
            let mut out = Vec::new();
            for n in nodes {
                flatten(n, &mut out);
            }
            if out.is_empty() {
                None
            } else {
                Some(out)
            }
        };
        eval(&self.root, &lookup)
    }

    /// Evaluates against whichever part of the message its scope names.
    pub fn matches(
        &self,
        attributes: &BTreeMap<String, MessageAttributeValue>,
        body: Option<&Value>,
    ) -> bool {
        match self.scope {
            FilterPolicyScope::MessageAttributes => self.matches_attributes(attributes),
            FilterPolicyScope::MessageBody => self.matches_body(body),
        }
    }
}

fn collect_children<'a>(node: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(m) => {
            if let Some(v) = m.get(key) {
                out.push(v);
            }
        }
        Value::Array(items) => {
            for i in items {
                collect_children(i, key, out);
            }
        }
        _ => {}
    }
}

/// The leaf values of a node: scalars, and array elements at any depth. Objects are not leaves.
fn flatten<'a>(v: &'a Value, out: &mut Vec<Val<'a>>) {
    match v {
        Value::String(s) => out.push(Val::Str(s)),
        Value::Number(n) => out.push(Val::Num(n.as_f64().and_then(to_fixed))),
        Value::Bool(b) => out.push(Val::Bool(*b)),
        Value::Null => out.push(Val::Null),
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Object(_) => {}
    }
}

fn eval<'a, F>(p: &Pattern, lookup: &F) -> bool
where
    F: Fn(&[String]) -> Option<Vec<Val<'a>>>,
{
    p.fields
        .iter()
        .all(|f| field_matches(f, lookup(&f.path).as_deref()))
        && p.ors
            .iter()
            .all(|group| group.iter().any(|alt| eval(alt, lookup)))
}

fn field_matches(f: &Field, values: Option<&[Val<'_>]>) -> bool {
    f.conds.iter().any(|c| match c {
        Cond::Exists(true) => values.is_some_and(|v| !v.is_empty()),
        Cond::Exists(false) => values.is_none_or(|v| v.is_empty()),
        c => values.is_some_and(|vs| vs.iter().any(|v| cond_matches(c, v))),
    })
}

fn cond_matches(c: &Cond, v: &Val<'_>) -> bool {
    match (c, v) {
        (Cond::Str(s), Val::Str(x)) => s == x,
        (Cond::Num(n), Val::Num(Some(x))) => n == x,
        (Cond::Bool(b), Val::Bool(x)) => b == x,
        (Cond::Null, Val::Null) => true,
        (Cond::Prefix(p), Val::Str(x)) => x.starts_with(p.as_str()),
        (Cond::Suffix(p), Val::Str(x)) => x.ends_with(p.as_str()),
        (Cond::EqualsIgnoreCase(p), Val::Str(x)) => eq_ignore_case(p, x),
        (Cond::AnythingBut(list), v) => match v {
            Val::Str(x) => !list.iter().any(|l| matches!(l, Lit::Str(s) if s == x)),
            Val::Num(Some(x)) => !list.iter().any(|l| matches!(l, Lit::Num(n) if n == x)),
            Val::Num(None) => true,
            Val::Bool(_) | Val::Null => true,
        },
        (Cond::AnythingButPrefix(p), Val::Str(x)) => !x.starts_with(p.as_str()),
        (Cond::AnythingButSuffix(p), Val::Str(x)) => !x.ends_with(p.as_str()),
        (Cond::AnythingButEqualsIgnoreCase(list), Val::Str(x)) => {
            !list.iter().any(|p| eq_ignore_case(p, x))
        }
        (
            Cond::Numeric {
                lower,
                upper,
                equal,
            },
            Val::Num(Some(x)),
        ) => {
            equal.is_none_or(|e| *x == e)
                && lower.is_none_or(|(l, incl)| if incl { *x >= l } else { *x > l })
                && upper.is_none_or(|(u, incl)| if incl { *x <= u } else { *x < u })
        }
        (Cond::Cidr { net, bits }, Val::Str(x)) => {
            x.parse::<IpAddr>().is_ok_and(|ip| in_cidr(ip, *net, *bits))
        }
        _ => false,
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits as u32)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits as u32)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `$or` is an explicit OR only when its value is an array of two or more objects; otherwise it
/// is an ordinary key (as in SNS).
fn is_or(key: &str, v: &Value) -> bool {
    key == "$or" && matches!(v, Value::Array(a) if a.len() >= 2 && a.iter().all(Value::is_object))
}

fn parse_pattern(
    obj: &serde_json::Map<String, Value>,
    prefix: &[String],
    scope: FilterPolicyScope,
    depth: usize,
) -> Result<Pattern, PolicyError> {
    if depth > MAX_DEPTH {
        return err("Filter policy is nested too deeply");
    }
    if obj.is_empty() {
        return err(if prefix.is_empty() {
            "Filter policy can not be empty".to_string()
        } else {
            format!("\"{}\" must not be an empty object", prefix.join("."))
        });
    }
    let mut p = Pattern::default();
    for (key, v) in obj {
        if is_or(key, v) {
            let Value::Array(items) = v else {
                unreachable_or()?
            };
            let mut group = Vec::new();
            for item in items {
                let Value::Object(o) = item else {
                    unreachable_or()?
                };
                group.push(parse_pattern(o, prefix, scope, depth + 1)?);
            }
            p.ors.push(group);
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(key.clone());
        match v {
            Value::Array(items) => {
                if items.is_empty() {
                    return err(format!("Empty arrays are not allowed (key \"{key}\")"));
                }
                let conds = items
                    .iter()
                    .map(|i| parse_cond(key, i))
                    .collect::<Result<Vec<_>, _>>()?;
                p.fields.push(Field { path, conds });
            }
            Value::Object(o) => {
                if scope == FilterPolicyScope::MessageAttributes {
                    return err("Filter policy scope MessageAttributes does not support nested filter policy");
                }
                let sub = parse_pattern(o, &path, scope, depth + 1)?;
                p.fields.extend(sub.fields);
                p.ors.extend(sub.ors);
            }
            _ => return err(format!("\"{key}\" must be an object or an array")),
        }
    }
    Ok(p)
}

fn unreachable_or<T>() -> Result<T, PolicyError> {
    err("invalid $or")
}

fn parse_number(key: &str, v: &Value) -> Result<Fixed, PolicyError> {
    let Some(x) = v.as_f64() else {
        return err(format!("Value of {key} must be numeric"));
    };
    to_fixed(x).ok_or_else(|| {
        PolicyError(format!(
            "Numeric value {x} is outside -1000000000..1000000000"
        ))
    })
}

fn parse_cond(key: &str, v: &Value) -> Result<Cond, PolicyError> {
    match v {
        Value::String(s) => Ok(Cond::Str(s.clone())),
        Value::Number(_) => Ok(Cond::Num(parse_number(key, v)?)),
        Value::Bool(b) => Ok(Cond::Bool(*b)),
        Value::Null => Ok(Cond::Null),
        Value::Array(_) => err(format!(
            "Match value of \"{key}\" must be a string, number, true, false, null or an object"
        )),
        Value::Object(o) => {
            if o.len() != 1 {
                return err(format!(
                    "Only one key allowed in match expression of \"{key}\""
                ));
            }
            let Some((op, arg)) = o.iter().next() else {
                return err("empty match expression");
            };
            let string_arg = |what: &str| -> Result<String, PolicyError> {
                match arg {
                    Value::String(s) => Ok(s.clone()),
                    _ => err(format!("{what} match pattern must be a string")),
                }
            };
            match op.as_str() {
                "prefix" => Ok(Cond::Prefix(string_arg("prefix")?)),
                "suffix" => Ok(Cond::Suffix(string_arg("suffix")?)),
                "equals-ignore-case" => {
                    Ok(Cond::EqualsIgnoreCase(string_arg("equals-ignore-case")?))
                }
                "exists" => match arg {
                    Value::Bool(b) => Ok(Cond::Exists(*b)),
                    _ => err("exists match pattern must be either true or false."),
                },
                "cidr" => parse_cidr(arg),
                "numeric" => parse_numeric(arg),
                "anything-but" => parse_anything_but(arg),
                other => err(format!("Unrecognized match type {other}")),
            }
        }
    }
}

fn parse_cidr(arg: &Value) -> Result<Cond, PolicyError> {
    let Value::String(s) = arg else {
        return err("Malformed CIDR, one '/' required");
    };
    let Some((ip, bits)) = s.split_once('/') else {
        return err(format!("Malformed CIDR, one '/' required: {s}"));
    };
    let net: IpAddr = ip
        .parse()
        .map_err(|_| PolicyError(format!("Nonstandard IP address: {ip}")))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let bits: u8 =
        bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| {
            PolicyError(format!("Malformed CIDR, mask bits must be 0..={max}: {s}"))
        })?;
    Ok(Cond::Cidr { net, bits })
}

fn parse_numeric(arg: &Value) -> Result<Cond, PolicyError> {
    let Value::Array(items) = arg else {
        return err("Value of numeric must be an array.");
    };
    if items.is_empty() {
        return err("Invalid member in numeric match: ]");
    }
    let (mut lower, mut upper, mut equal) = (None, None, None);
    let mut i = 0;
    while i < items.len() {
        let Value::String(op) = &items[i] else {
            return err(format!("Invalid member in numeric match: {}", items[i]));
        };
        let Some(arg) = items.get(i + 1) else {
            return err(format!("Value of {op} must be numeric"));
        };
        let n = parse_number(op, arg)?;
        match op.as_str() {
            "=" => {
                if i != 0 || items.len() != 2 {
                    return err("Equality is only allowed alone: [\"=\", n]");
                }
                equal = Some(n);
            }
            ">" | ">=" => {
                if lower.is_some() || i != 0 {
                    return err(format!("Invalid member in numeric match: {op}"));
                }
                lower = Some((n, op == ">="));
            }
            "<" | "<=" => {
                if upper.is_some() {
                    return err(format!("Invalid member in numeric match: {op}"));
                }
                upper = Some((n, op == "<="));
            }
            other => return err(format!("Unrecognized numeric range operator: {other}")),
        }
        i += 2;
    }
    if let (Some((l, _)), Some((u, _))) = (lower, upper) {
        if l >= u {
            return err("Bottom must be less than top");
        }
    }
    Ok(Cond::Numeric {
        lower,
        upper,
        equal,
    })
}

fn parse_anything_but(arg: &Value) -> Result<Cond, PolicyError> {
    let lit = |v: &Value| -> Result<Lit, PolicyError> {
        match v {
            Value::String(s) => Ok(Lit::Str(s.clone())),
            Value::Number(_) => Ok(Lit::Num(parse_number("anything-but", v)?)),
            _ => err("Inside anything but list, start|null|boolean is not supported."),
        }
    };
    match arg {
        Value::String(_) | Value::Number(_) => Ok(Cond::AnythingBut(vec![lit(arg)?])),
        Value::Array(items) => {
            if items.is_empty() {
                return err("Empty arrays are not allowed");
            }
            Ok(Cond::AnythingBut(
                items.iter().map(lit).collect::<Result<_, _>>()?,
            ))
        }
        Value::Object(o) => {
            if o.len() != 1 {
                return err("Only one key allowed in match expression");
            }
            let Some((op, v)) = o.iter().next() else {
                return err("empty match expression");
            };
            match (op.as_str(), v) {
                ("prefix", Value::String(s)) if !s.is_empty() => {
                    Ok(Cond::AnythingButPrefix(s.clone()))
                }
                ("suffix", Value::String(s)) if !s.is_empty() => {
                    Ok(Cond::AnythingButSuffix(s.clone()))
                }
                ("equals-ignore-case", Value::String(s)) => {
                    Ok(Cond::AnythingButEqualsIgnoreCase(vec![s.clone()]))
                }
                ("equals-ignore-case", Value::Array(a))
                    if !a.is_empty() && a.iter().all(Value::is_string) =>
                {
                    Ok(Cond::AnythingButEqualsIgnoreCase(
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect(),
                    ))
                }
                ("prefix" | "suffix", _) => {
                    err(format!("Value of {op} must be a non-empty string"))
                }
                _ => err(format!("Unsupported anything-but pattern: {op}")),
            }
        }
        _ => err("Value of anything-but must be an array or single string/number value."),
    }
}

/// The AND-only alternatives of a pattern, each as the number of conditions per key.
fn alternatives(p: &Pattern) -> Vec<Vec<usize>> {
    let mut alts: Vec<Vec<usize>> = vec![p.fields.iter().map(|f| f.conds.len()).collect()];
    for group in &p.ors {
        let mut next = Vec::new();
        for a in &alts {
            for sub in group {
                for s in alternatives(sub) {
                    let mut c = a.clone();
                    c.extend(s);
                    next.push(c);
                    if next.len() > 10 * MAX_COMBINATIONS {
                        // Already far over the limit; stop expanding.
                        return vec![vec![MAX_COMBINATIONS + 1]; 2];
                    }
                }
            }
        }
        alts = next;
    }
    alts
}

#[cfg(test)]
mod tests;
