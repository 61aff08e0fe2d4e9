//! Unit tests per operator, limit tests, and a property test against a reference model.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn attrs(list: &[(&str, &str, &str)]) -> BTreeMap<String, MessageAttributeValue> {
    list.iter()
        .map(|(k, t, v)| {
            (
                k.to_string(),
                MessageAttributeValue {
                    data_type: t.to_string(),
                    string_value: Some(v.to_string()),
                    binary_value: None,
                },
            )
        })
        .collect()
}

fn pol(p: Value) -> FilterPolicy {
    FilterPolicy::parse(&p.to_string(), FilterPolicyScope::MessageAttributes).unwrap()
}

fn body_pol(p: Value) -> FilterPolicy {
    FilterPolicy::parse(&p.to_string(), FilterPolicyScope::MessageBody).unwrap()
}

fn s(v: &str) -> BTreeMap<String, MessageAttributeValue> {
    attrs(&[("k", "String", v)])
}

fn n(v: &str) -> BTreeMap<String, MessageAttributeValue> {
    attrs(&[("k", "Number", v)])
}

fn bad(p: Value) -> String {
    FilterPolicy::parse(&p.to_string(), FilterPolicyScope::MessageAttributes)
        .unwrap_err()
        .0
}

#[test]
fn exact_string_and_number() {
    let p = pol(json!({"k": ["a", 5]}));
    assert!(p.matches_attributes(&s("a")));
    assert!(!p.matches_attributes(&s("A")));
    assert!(
        !p.matches_attributes(&s("5")),
        "a string never matches a number"
    );
    assert!(p.matches_attributes(&n("5")));
    assert!(
        p.matches_attributes(&n("5.000001")),
        "five decimals of accuracy"
    );
    assert!(p.matches_attributes(&n("5.0")));
    assert!(!p.matches_attributes(&n("6")));
    assert!(!p.matches_attributes(&BTreeMap::new()));
    assert!(!p.matches_attributes(&attrs(&[("other", "String", "a")])));
}

#[test]
fn prefix_suffix_equals_ignore_case() {
    let p = pol(json!({"k": [{"prefix": "ord"}]}));
    assert!(p.matches_attributes(&s("order")));
    assert!(!p.matches_attributes(&s("xorder")));
    let p = pol(json!({"k": [{"suffix": ".png"}]}));
    assert!(p.matches_attributes(&s("a.png")));
    assert!(!p.matches_attributes(&s("a.png2")));
    let p = pol(json!({"k": [{"equals-ignore-case": "PaiD"}]}));
    assert!(p.matches_attributes(&s("paid")));
    assert!(p.matches_attributes(&s("PAID")));
    assert!(!p.matches_attributes(&s("paidx")));
}

#[test]
fn anything_but() {
    let p = pol(json!({"k": [{"anything-but": ["a", "b"]}]}));
    assert!(p.matches_attributes(&s("c")));
    assert!(!p.matches_attributes(&s("a")));
    assert!(
        !p.matches_attributes(&BTreeMap::new()),
        "anything-but needs the key"
    );
    let p = pol(json!({"k": [{"anything-but": 5}]}));
    assert!(!p.matches_attributes(&n("5")));
    assert!(p.matches_attributes(&n("6")));
    let p = pol(json!({"k": [{"anything-but": {"prefix": "x"}}]}));
    assert!(p.matches_attributes(&s("yx")));
    assert!(!p.matches_attributes(&s("xy")));
    let p = pol(json!({"k": [{"anything-but": {"suffix": "x"}}]}));
    assert!(p.matches_attributes(&s("xy")));
    assert!(!p.matches_attributes(&s("yx")));
    let p = pol(json!({"k": [{"anything-but": {"equals-ignore-case": ["A", "b"]}}]}));
    assert!(!p.matches_attributes(&s("a")));
    assert!(!p.matches_attributes(&s("B")));
    assert!(p.matches_attributes(&s("c")));
}

#[test]
fn numeric_ranges() {
    let p = pol(json!({"k": [{"numeric": [">", 0, "<=", 100]}]}));
    assert!(!p.matches_attributes(&n("0")));
    assert!(p.matches_attributes(&n("0.00001")));
    assert!(p.matches_attributes(&n("100")));
    assert!(!p.matches_attributes(&n("100.00001")));
    assert!(
        !p.matches_attributes(&s("50")),
        "numeric conditions need numbers"
    );
    let p = pol(json!({"k": [{"numeric": ["=", -3.5]}]}));
    assert!(p.matches_attributes(&n("-3.5")));
    assert!(!p.matches_attributes(&n("-3.4")));
    let p = pol(json!({"k": [{"numeric": ["<", 10]}]}));
    assert!(p.matches_attributes(&n("-1000")));
    assert!(!p.matches_attributes(&n("not a number")));
    assert!(
        !p.matches_attributes(&n("2e9")),
        "outside the numeric range"
    );
}

#[test]
fn exists() {
    let p = pol(json!({"k": [{"exists": true}]}));
    assert!(p.matches_attributes(&s("x")));
    assert!(!p.matches_attributes(&BTreeMap::new()));
    let p = pol(json!({"k": [{"exists": false}]}));
    assert!(!p.matches_attributes(&s("x")));
    assert!(p.matches_attributes(&BTreeMap::new()));
    let bin: BTreeMap<String, MessageAttributeValue> = [(
        "k".to_string(),
        MessageAttributeValue {
            data_type: "Binary".into(),
            string_value: None,
            binary_value: Some(bytes::Bytes::from_static(b"x")),
        },
    )]
    .into();
    assert!(
        p.matches_attributes(&bin),
        "binary attributes are not matched"
    );
}

#[test]
fn cidr() {
    let p = pol(json!({"k": [{"cidr": "10.0.0.0/24"}]}));
    assert!(p.matches_attributes(&s("10.0.0.255")));
    assert!(!p.matches_attributes(&s("10.0.1.0")));
    assert!(!p.matches_attributes(&s("not an ip")));
    let p = pol(json!({"k": [{"cidr": "2001:db8::/32"}]}));
    assert!(p.matches_attributes(&s("2001:db8::1")));
    assert!(!p.matches_attributes(&s("2001:db9::1")));
    assert!(!p.matches_attributes(&s("10.0.0.1")));
}

#[test]
fn string_arrays() {
    let p = pol(json!({"k": ["b", {"numeric": [">", 10]}]}));
    assert!(p.matches_attributes(&attrs(&[("k", "String.Array", r#"["a","b"]"#)])));
    assert!(p.matches_attributes(&attrs(&[("k", "String.Array", r#"["a", 11]"#)])));
    assert!(!p.matches_attributes(&attrs(&[("k", "String.Array", r#"["a", 9]"#)])));
    assert!(!p.matches_attributes(&attrs(&[("k", "String.Array", r#"not json"#)])));
}

#[test]
fn and_or() {
    let p = pol(json!({"a": ["1"], "b": ["2", "3"]}));
    assert!(p.matches_attributes(&attrs(&[("a", "String", "1"), ("b", "String", "3")])));
    assert!(!p.matches_attributes(&attrs(&[("a", "String", "1")])));
    let p = pol(json!({"a": ["1"], "$or": [{"b": ["2"]}, {"c": ["3"]}]}));
    assert!(p.matches_attributes(&attrs(&[("a", "String", "1"), ("c", "String", "3")])));
    assert!(!p.matches_attributes(&attrs(&[("a", "String", "2"), ("c", "String", "3")])));
    assert!(!p.matches_attributes(&attrs(&[("a", "String", "1")])));
    // "$or" with a single object is an ordinary key.
    let p = pol(json!({"$or": ["x"]}));
    assert!(p.matches_attributes(&attrs(&[("$or", "String", "x")])));
}

#[test]
fn body_nested_and_arrays() {
    let p = body_pol(
        json!({"order": {"status": ["paid"], "items": {"sku": [{"prefix": "A"}]}}, "tags": ["red"]}),
    );
    let yes = json!({"order": {"status": "paid", "items": [{"sku": "B1"}, {"sku": "A7"}]}, "tags": ["blue", "red"]});
    let no = json!({"order": {"status": "paid", "items": [{"sku": "B1"}]}, "tags": ["red"]});
    assert!(p.matches_body(Some(&yes)));
    assert!(!p.matches_body(Some(&no)));
    assert!(!p.matches_body(Some(&json!("not an object"))));
    assert!(!p.matches_body(None));
    let p = body_pol(json!({"flag": [true], "gone": [null]}));
    assert!(p.matches_body(Some(&json!({"flag": true, "gone": null}))));
    assert!(!p.matches_body(Some(&json!({"flag": "true", "gone": null}))));
    let p = body_pol(json!({"a": {"b": [{"exists": false}]}}));
    assert!(p.matches_body(Some(&json!({"a": {"c": 1}}))));
    assert!(!p.matches_body(Some(&json!({"a": {"b": 1}}))));
    let p = body_pol(json!({"$or": [{"a": [1]}, {"b": {"c": [2]}}]}));
    assert!(p.matches_body(Some(&json!({"b": {"c": 2}}))));
    assert!(!p.matches_body(Some(&json!({"b": {"c": 3}}))));
}

#[test]
fn validation() {
    assert!(bad(json!({"a": {"b": ["x"]}})).contains("nested"));
    assert!(bad(json!({"a": "x"})).contains("must be an object or an array"));
    assert!(bad(json!({"a": []})).contains("Empty"));
    assert!(
        bad(json!({"a": ["1"], "b": ["1"], "c": ["1"], "d": ["1"], "e": ["1"], "f": ["1"]}))
            .contains("5 keys")
    );
    let many: Vec<i32> = (0..151).collect();
    assert!(bad(json!({"a": many})).contains("complex"));
    let v: Vec<i32> = (0..13).collect();
    assert!(
        bad(json!({"a": v, "b": v})).contains("complex"),
        "13*13=169 combinations"
    );
    let v: Vec<i32> = (0..12).collect();
    FilterPolicy::parse(
        &json!({"a": v, "b": v}).to_string(),
        FilterPolicyScope::MessageAttributes,
    )
    .unwrap();
    assert!(bad(json!({"a": [{"numeric": [">", "x"]}]})).contains("numeric"));
    assert!(bad(json!({"a": [{"numeric": [">", 10, "<", 5]}]})).contains("Bottom"));
    assert!(bad(json!({"a": [{"numeric": ["!", 10]}]})).contains("Unrecognized"));
    assert!(bad(json!({"a": [{"numeric": [">", 2e9]}]})).contains("outside"));
    assert!(bad(json!({"a": [{"prefix": 5}]})).contains("prefix"));
    assert!(bad(json!({"a": [{"exists": "yes"}]})).contains("exists"));
    assert!(bad(json!({"a": [{"cidr": "10.0.0.0"}]})).contains("CIDR"));
    assert!(bad(json!({"a": [{"cidr": "10.0.0.0/33"}]})).contains("CIDR"));
    assert!(bad(json!({"a": [{"wildcard-ish": "x"}]})).contains("Unrecognized"));
    assert!(bad(json!(["a"])).contains("object"));
    let big = format!("{{\"a\": [\"{}\"]}}", "x".repeat(MAX_POLICY_BYTES));
    assert!(
        FilterPolicy::parse(&big, FilterPolicyScope::MessageAttributes)
            .unwrap_err()
            .0
            .contains("too large")
    );
    assert!(FilterPolicy::parse("{not json", FilterPolicyScope::MessageAttributes).is_err());
    // $or alternatives: each has at most 5 keys; combinations add up.
    let or = json!({"a": ["1"], "$or": [{"b": ["1"], "c": ["1"], "d": ["1"], "e": ["1"]}, {"f": ["1"]}]});
    FilterPolicy::parse(&or.to_string(), FilterPolicyScope::MessageAttributes).unwrap();
    let or = json!({"a": ["1"], "$or": [{"b": ["1"], "c": ["1"], "d": ["1"], "e": ["1"], "g": ["1"]}, {"f": ["1"]}]});
    assert!(
        FilterPolicy::parse(&or.to_string(), FilterPolicyScope::MessageAttributes)
            .unwrap_err()
            .0
            .contains("5 keys")
    );
}

// ------------------------------------------------------------------ property test

/// A message in the model: key → value, where a value is a string, a number or an array of them.
#[derive(Debug, Clone)]
enum MVal {
    S(String),
    N(f64),
    A(Vec<MVal>),
}

const KEYS: &[&str] = &["a", "b", "c"];
const STRS: &[&str] = &["x", "xy", "yx", "X", "10.0.0.5", "10.0.1.5", "abc"];
const NUMS: &[f64] = &[-2.0, 0.0, 1.0, 5.0, 5.5, 10.0, 100.0];

fn mval() -> impl Strategy<Value = MVal> {
    let leaf = prop_oneof![
        prop::sample::select(STRS).prop_map(|s| MVal::S(s.to_string())),
        prop::sample::select(NUMS).prop_map(MVal::N),
    ];
    prop_oneof![3 => leaf.clone(), 1 => prop::collection::vec(leaf, 1..3).prop_map(MVal::A)]
}

fn message() -> impl Strategy<Value = BTreeMap<String, MVal>> {
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(str::to_string),
        mval(),
        0..4,
    )
}

fn cond() -> impl Strategy<Value = Value> {
    let s = || prop::sample::select(STRS).prop_map(|s| s.to_string());
    let num = || prop::sample::select(NUMS);
    prop_oneof![
        s().prop_map(Value::from),
        num().prop_map(|n| json!(n)),
        s().prop_map(|p| json!({"prefix": &p[..1]})),
        s().prop_map(|p| json!({"suffix": &p[p.len() - 1..]})),
        s().prop_map(|p| json!({"equals-ignore-case": p.to_uppercase()})),
        prop::collection::vec(s(), 1..3).prop_map(|l| json!({"anything-but": l})),
        num().prop_map(|n| json!({"anything-but": n})),
        s().prop_map(|p| json!({"anything-but": {"prefix": &p[..1]}})),
        (num(), any::<bool>())
            .prop_map(|(n, i)| json!({"numeric": [if i { ">=" } else { ">" }, n]})),
        (num(), any::<bool>())
            .prop_map(|(n, i)| json!({"numeric": [if i { "<=" } else { "<" }, n]})),
        num().prop_map(|n| json!({"numeric": ["=", n]})),
        (num(), num())
            .prop_filter("lower < upper", |(a, b)| a < b)
            .prop_map(|(a, b)| json!({"numeric": [">", a, "<=", b]})),
        any::<bool>().prop_map(|b| json!({"exists": b})),
        Just(json!({"cidr": "10.0.0.0/24"})),
    ]
}

fn flat_policy() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(str::to_string),
        prop::collection::vec(cond(), 1..4),
        1..3,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::Array(v))).collect())
}

fn policy() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => flat_policy().prop_map(Value::Object),
        1 => (flat_policy(), flat_policy(), flat_policy()).prop_map(|(mut base, a, b)| {
            base.insert("$or".into(), json!([a, b]));
            Value::Object(base)
        }),
    ]
}

/// The reference model: interprets the policy JSON directly, the way the SNS docs describe it.
fn model_matches(policy: &Value, msg: &BTreeMap<String, MVal>) -> bool {
    let Value::Object(m) = policy else {
        return false;
    };
    m.iter().all(|(k, v)| {
        if k == "$or" {
            return v
                .as_array()
                .unwrap()
                .iter()
                .any(|alt| model_matches(alt, msg));
        }
        let values: Option<Vec<MVal>> = msg.get(k).map(|v| match v {
            MVal::A(items) => items.clone(),
            other => vec![other.clone()],
        });
        v.as_array()
            .unwrap()
            .iter()
            .any(|c| model_cond(c, values.as_deref()))
    })
}

fn fx(x: f64) -> i64 {
    (x * 1e5).round() as i64
}

fn model_cond(c: &Value, values: Option<&[MVal]>) -> bool {
    if let Some(e) = c.get("exists") {
        return values.is_some() == e.as_bool().unwrap();
    }
    let Some(values) = values else { return false };
    values.iter().any(|v| model_one(c, v))
}

fn model_one(c: &Value, v: &MVal) -> bool {
    match (c, v) {
        (Value::String(s), MVal::S(x)) => s == x,
        (Value::Number(n), MVal::N(x)) => fx(n.as_f64().unwrap()) == fx(*x),
        (Value::Object(o), _) => {
            let (op, arg) = o.iter().next().unwrap();
            match (op.as_str(), v) {
                ("prefix", MVal::S(x)) => x.starts_with(arg.as_str().unwrap()),
                ("suffix", MVal::S(x)) => x.ends_with(arg.as_str().unwrap()),
                ("equals-ignore-case", MVal::S(x)) => {
                    x.to_lowercase() == arg.as_str().unwrap().to_lowercase()
                }
                ("anything-but", _) => match arg {
                    Value::Object(p) => match v {
                        MVal::S(x) => !x.starts_with(p["prefix"].as_str().unwrap()),
                        _ => false,
                    },
                    Value::Array(list) => !list.iter().any(|l| model_one(l, v)),
                    single => !model_one(single, v),
                },
                ("numeric", MVal::N(x)) => {
                    let a = arg.as_array().unwrap();
                    a.chunks(2).all(|op| {
                        let n = fx(op[1].as_f64().unwrap());
                        let x = fx(*x);
                        match op[0].as_str().unwrap() {
                            "=" => x == n,
                            ">" => x > n,
                            ">=" => x >= n,
                            "<" => x < n,
                            "<=" => x <= n,
                            _ => unreachable!(),
                        }
                    })
                }
                ("cidr", MVal::S(x)) => x.starts_with("10.0.0."),
                _ => false,
            }
        }
        _ => false,
    }
}

fn to_attributes(msg: &BTreeMap<String, MVal>) -> BTreeMap<String, MessageAttributeValue> {
    fn js(v: &MVal) -> Value {
        match v {
            MVal::S(s) => json!(s),
            MVal::N(n) => json!(n),
            MVal::A(a) => Value::Array(a.iter().map(js).collect()),
        }
    }
    msg.iter()
        .map(|(k, v)| {
            let (t, s) = match v {
                MVal::S(s) => ("String", s.clone()),
                MVal::N(n) => ("Number", n.to_string()),
                MVal::A(_) => ("String.Array", js(v).to_string()),
            };
            (
                k.clone(),
                MessageAttributeValue {
                    data_type: t.into(),
                    string_value: Some(s),
                    binary_value: None,
                },
            )
        })
        .collect()
}

fn to_body(msg: &BTreeMap<String, MVal>, nest: bool) -> Value {
    fn js(v: &MVal) -> Value {
        match v {
            MVal::S(s) => json!(s),
            MVal::N(n) => json!(n),
            MVal::A(a) => Value::Array(a.iter().map(js).collect()),
        }
    }
    let inner: serde_json::Map<String, Value> =
        msg.iter().map(|(k, v)| (k.clone(), js(v))).collect();
    if nest {
        json!({"outer": [{"other": 1}, Value::Object(inner)]})
    } else {
        Value::Object(inner)
    }
}

fn nest_policy(p: &Value) -> Value {
    json!({"outer": p})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn engine_agrees_with_reference_model(policy in policy(), msg in message()) {
        let expected = model_matches(&policy, &msg);
        let text = policy.to_string();
        // The reference model knows matching, not SNS's limit of 150 value combinations: a
        // generated policy over it is refused by the engine (as SNS does) and not compared.
        // Every other parse error still fails the test.
        if let Err(e) = FilterPolicy::parse(&text, FilterPolicyScope::MessageAttributes) {
            prop_assert!(e.to_string().contains("too complex"), "unexpected error for {}: {}", text, e);
            return Err(TestCaseError::reject("over SNS's combination limit"));
        }
        let p = FilterPolicy::parse(&text, FilterPolicyScope::MessageAttributes).unwrap();
        prop_assert_eq!(p.matches_attributes(&to_attributes(&msg)), expected, "attributes: {} vs {:?}", text, msg);
        let b = FilterPolicy::parse(&text, FilterPolicyScope::MessageBody).unwrap();
        prop_assert_eq!(b.matches_body(Some(&to_body(&msg, false))), expected, "body: {} vs {:?}", text, msg);
        // The same policy nested one level, against the message nested inside an array of objects.
        let nested = nest_policy(&policy);
        let nb = FilterPolicy::parse(&nested.to_string(), FilterPolicyScope::MessageBody).unwrap();
        prop_assert_eq!(nb.matches_body(Some(&to_body(&msg, true))), expected, "nested body: {} vs {:?}", nested, msg);
    }
}
