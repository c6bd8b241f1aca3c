//! Unit tests of `arguments`.

use super::*;
use serde_json::json;

fn def(name: &str, type_name: &str, required: bool) -> ArgumentDefinition {
    ArgumentDefinition {
        name: name.into(),
        type_name: type_name.into(),
        required,
        has_default: !required,
    }
}

fn defs() -> Vec<ArgumentDefinition> {
    vec![
        def(
            "in_Vendor",
            "System.String, System.Private.CoreLib, Version=8.0.0.0",
            true,
        ),
        def("in_Amount", "System.Decimal", true),
        def("in_Count", "System.Int32", false),
        def("in_Due", "System.DateTime", false),
        def("in_Urgent", "System.Boolean", false),
        def("in_Ids", "System.Int64[]", false),
        def(
            "in_Tags",
            "System.Collections.Generic.List`1[[System.String, System.Private.CoreLib]]",
            false,
        ),
        def(
            "in_Options",
            "System.Collections.Generic.Dictionary`2[System.String,System.Object]",
            false,
        ),
    ]
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn good_input_is_merged_over_defaults() {
    let out = validate(
        &defs(),
        &obj(json!({"in_Urgent": false, "in_Vendor": "default"})),
        &obj(json!({"in_Vendor": "ACME", "in_Amount": 12.5, "in_Due": "2026-12-01T10:00:00Z", "in_Ids": [1, 2],
            "in_Tags": ["a"], "in_Options": {"x": 1}, "in_Count": 3})),
    )
    .unwrap();
    assert_eq!(out["in_Vendor"], "ACME");
    assert_eq!(out["in_Urgent"], false);
}

#[test]
fn each_bad_argument_is_named() {
    let problems = validate(
        &defs(),
        &Map::new(),
        &obj(json!({"in_Amount": "12", "in_Count": 3_000_000_000_i64, "in_Due": "tomorrow", "in_Ids": [1, "x"], "in_Nope": 1})),
    )
    .unwrap_err();
    let text: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.problem))
        .collect();
    let find = |f: &str| {
        text.iter()
            .find(|t| t.starts_with(f))
            .unwrap_or_else(|| panic!("{f} in {text:?}"))
            .clone()
    };
    assert!(find("in_Amount").contains("expected a number, got a string"));
    assert!(find("in_Count").contains("out of range"));
    assert!(find("in_Due").contains("ISO 8601"));
    assert!(find("in_Ids").contains("item 1"));
    assert!(find("in_Nope").contains("unknown argument"));
    assert!(find("in_Vendor").contains("required (System.String) but missing"));
    assert_eq!(problems.len(), 6);
}

#[test]
fn the_ten_thousand_character_limit_is_checked_before_sending() {
    let long = "x".repeat(MAX_INPUT_ARGUMENTS);
    let problems = validate(
        &[def("s", "System.String", false)],
        &Map::new(),
        &obj(json!({"s": long})),
    )
    .unwrap_err();
    assert!(problems[0].problem.contains("at most 10000"));
    let fits = "x".repeat(MAX_INPUT_ARGUMENTS - r#"{"s":""}"#.len());
    validate(
        &[def("s", "System.String", false)],
        &Map::new(),
        &obj(json!({"s": fits})),
    )
    .unwrap();
}

/// Parses like a request body: numbers keep their text.
fn body(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap()
}

#[test]
fn decimals_and_int64s_stay_exact_and_out_of_range_values_are_named() {
    let defs = [
        def("d", "System.Decimal", false),
        def("l", "System.Int64", false),
        def("f", "System.Single", false),
        def("x", "System.Double", false),
    ];
    let ok = validate(
        &defs,
        &Map::new(),
        &body(r#"{"d": 12345678901234567.89, "l": 9223372036854775807, "f": 1.5, "x": 1e300}"#),
    )
    .unwrap();
    assert_eq!(
        Value::Object(ok).to_string(),
        r#"{"d":12345678901234567.89,"f":1.5,"l":9223372036854775807,"x":1e+300}"#
    );
    for good in [
        "79228162514264337593543950335",
        "-79228162514264337593543950335",
        "0.0000000000000000000000000001",
        "1.50000000000000000000000000000000",
        "7.9228162514264337593543950335e28",
        "0",
        "-0.0",
    ] {
        assert_eq!(decimal_problem(good), None, "{good}");
    }
    for (field, text, says) in [
        (
            "d",
            "1606938044258990275541962092341162602522202993782792835301376",
            "out of range for System.Decimal",
        ),
        ("d", "79228162514264337593543950336", "out of range"),
        ("d", "1e29", "out of range"),
        (
            "d",
            "0.00000000000000000000000000001",
            "more digits after the point",
        ),
        ("l", "9223372036854775808", "out of range"),
        (
            "l",
            "100000000000000000000000000000000000000000",
            "out of range",
        ),
        ("l", "1.5", "expected an integer"),
        ("f", "3.5e38", "out of range"),
        ("x", "1e400", "out of range"),
    ] {
        let problems = validate(
            &defs,
            &Map::new(),
            &body(&format!(r#"{{"{field}": {text}}}"#)),
        )
        .unwrap_err();
        assert_eq!(problems[0].field, field);
        // The value as JSON writes it back (an exponent gets its sign: 1e29 is 1e+29).
        let written = serde_json::from_str::<Value>(text).unwrap().to_string();
        assert!(
            problems[0].problem.contains(&written) && problems[0].problem.contains(says),
            "{field}={text}: {}",
            problems[0].problem
        );
    }
}

#[test]
fn type_names_map_to_shapes() {
    assert_eq!(
        shape("System.String[]"),
        Shape::Array(Box::new(Shape::String))
    );
    assert_eq!(
        shape("System.Collections.Generic.List`1[System.Int32]"),
        Shape::Array(Box::new(Shape::Integer {
            min: i32::MIN.into(),
            max: i32::MAX.into()
        }))
    );
    assert_eq!(shape("System.Data.DataTable"), Shape::Any);
    assert_eq!(
        shape("Newtonsoft.Json.Linq.JObject, Newtonsoft.Json"),
        Shape::Object
    );
}

#[test]
fn null_is_refused_where_the_dotnet_type_cannot_be_null() {
    let defs = [
        def("amount", "System.Decimal", true),
        def("note", "System.String", false),
        def("count", "System.Int32", false),
        def(
            "maybe",
            "System.Nullable`1[[System.Int32, System.Private.CoreLib]]",
            false,
        ),
        def("name", "System.String", true),
    ];
    let problems = validate(
        &defs,
        &Map::new(),
        &obj(json!({"amount": null, "note": null, "count": null, "maybe": null, "name": null})),
    )
    .unwrap_err();
    let named: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(named, ["amount", "count", "name"], "{problems:?}");
    assert!(problems[0].problem.contains("null is not accepted"));
    assert!(problems[1].problem.contains("got null"), "{problems:?}");
    validate(
        &defs,
        &Map::new(),
        &obj(json!({"amount": 1, "name": "n", "note": null, "maybe": null})),
    )
    .unwrap();
}

#[test]
fn the_ten_thousand_character_message_names_the_largest_arguments() {
    let defs = [
        def("small", "System.String", false),
        def("big", "System.String", false),
        def("bigger", "System.String", false),
    ];
    let input = obj(json!({
        "small": "x",
        "big": "y".repeat(4_000),
        "bigger": "z".repeat(6_500),
    }));
    let problems = validate(&defs, &Map::new(), &input).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "bigger");
    assert!(
        problems[0]
            .problem
            .contains("the largest: bigger (6502 characters), big (4002 characters)"),
        "{}",
        problems[0].problem
    );
}
