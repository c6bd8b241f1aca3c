//! Input arguments checked against a release's definitions (`Arguments.Input`), so a
//! bad call is refused with a 422 naming each argument instead of failing in the robot.

use serde_json::{Map, Value};

use super::connection::FieldProblem;
use crate::orchestrator::models::ArgumentDefinition;

/// Orchestrator's cap on the `InputArguments` string.
pub const MAX_INPUT_ARGUMENTS: usize = 10_000;

/// The JSON shape a .NET type takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `System.String`, `System.Char`, `System.Guid`, `System.TimeSpan`.
    String,
    /// An integer type, with its range.
    Integer { min: i128, max: i128 },
    /// `System.Double` (`max` f64::MAX) and `System.Single` (`max` f32::MAX): any finite
    /// number within that magnitude.
    Float { max: f64 },
    /// `System.Decimal`: at most 28 digits after the point and a 96-bit mantissa, kept
    /// exactly as written (never through a float).
    Decimal,
    /// `System.Boolean`.
    Boolean,
    /// `System.DateTime`, `System.DateTimeOffset`: an ISO 8601 string.
    DateTime,
    /// `T[]`, `List<T>`, `IEnumerable<T>`...
    Array(Box<Shape>),
    /// Dictionaries, `JObject`, `DataTable` rows...
    Object,
    /// `System.Object` or a type we cannot check.
    Any,
}

/// The type name without its assembly qualification: `System.String, System.Private.CoreLib, ...` -> `System.String`.
fn bare(type_name: &str) -> &str {
    let mut depth = 0;
    for (i, c) in type_name.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => return type_name[..i].trim(),
            _ => {}
        }
    }
    type_name.trim()
}

/// Maps a .NET type name to the JSON shape it accepts.
pub fn shape(type_name: &str) -> Shape {
    let t = bare(type_name);
    if let Some(element) = t.strip_suffix("[]") {
        return Shape::Array(Box::new(shape(element)));
    }
    if let Some(open) = t.find("`1[") {
        let generic = &t[..open];
        if [
            "List",
            "IList",
            "IEnumerable",
            "ICollection",
            "Collection",
            "HashSet",
            "IReadOnlyList",
        ]
        .iter()
        .any(|g| generic.ends_with(g))
        {
            let inner = t[open + 3..].trim_end_matches(']').trim_start_matches('[');
            return Shape::Array(Box::new(shape(inner)));
        }
    }
    if t.contains("Dictionary`2") || t.ends_with("JObject") || t.ends_with("ExpandoObject") {
        return Shape::Object;
    }
    let int = |min: i128, max: i128| Shape::Integer { min, max };
    match t {
        "System.String" | "System.Char" | "System.Guid" | "System.TimeSpan" | "System.Uri" => {
            Shape::String
        }
        "System.Int32" => int(i32::MIN.into(), i32::MAX.into()),
        "System.Int64" => int(i64::MIN.into(), i64::MAX.into()),
        "System.Int16" => int(i16::MIN.into(), i16::MAX.into()),
        "System.Byte" => int(0, u8::MAX.into()),
        "System.SByte" => int(i8::MIN.into(), i8::MAX.into()),
        "System.UInt16" => int(0, u16::MAX.into()),
        "System.UInt32" => int(0, u32::MAX.into()),
        "System.UInt64" => int(0, u64::MAX.into()),
        "System.Double" => Shape::Float { max: f64::MAX },
        "System.Single" => Shape::Float {
            max: f32::MAX.into(),
        },
        "System.Decimal" => Shape::Decimal,
        "System.Boolean" => Shape::Boolean,
        "System.DateTime" | "System.DateTimeOffset" => Shape::DateTime,
        "Newtonsoft.Json.Linq.JArray" => Shape::Array(Box::new(Shape::Any)),
        _ => Shape::Any,
    }
}

fn describe(s: &Shape) -> String {
    match s {
        Shape::String => "a string".into(),
        Shape::Integer { .. } => "an integer".into(),
        Shape::Float { .. } | Shape::Decimal => "a number".into(),
        Shape::Boolean => "true or false".into(),
        Shape::DateTime => "an ISO 8601 date-time string".into(),
        Shape::Array(inner) => format!(
            "an array of {}",
            describe(inner)
                .trim_start_matches("a ")
                .trim_start_matches("an ")
        ),
        Shape::Object => "an object".into(),
        Shape::Any => "any value".into(),
    }
}

/// Why `v` does not fit `s`, if it does not.
fn check(s: &Shape, v: &Value) -> Option<String> {
    let fits = match (s, v) {
        (Shape::Any, _) | (_, Value::Null) => true,
        (Shape::String, Value::String(_))
        | (Shape::Boolean, Value::Bool(_))
        | (Shape::Object, Value::Object(_)) => true,
        (Shape::Float { max }, Value::Number(n)) => {
            // The text as sent (serde_json keeps it exactly: `arbitrary_precision`).
            return match n.to_string().parse::<f64>() {
                Ok(f) if f.is_finite() && f.abs() <= *max => None,
                _ => Some(format!("{n} is out of range (at most ±{max:e})")),
            };
        }
        (Shape::Decimal, Value::Number(n)) => return decimal_problem(&n.to_string()),
        (Shape::Integer { min, max }, Value::Number(n)) => {
            let text = n.to_string();
            if text.contains(['.', 'e', 'E']) {
                return Some(format!("expected an integer, got {text}"));
            }
            return match text.parse::<i128>() {
                Ok(i) if i >= *min && i <= *max => None,
                _ => Some(format!("{text} is out of range ({min} to {max})")),
            };
        }
        (Shape::DateTime, Value::String(t)) => {
            chrono::DateTime::parse_from_rfc3339(t).is_ok()
                || chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
                || chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok()
        }
        (Shape::Array(inner), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(why) = check(inner, item) {
                    return Some(format!("item {i}: {why}"));
                }
            }
            true
        }
        _ => false,
    };
    (!fits).then(|| format!("expected {}, got {}", describe(s), kind(v)))
}

/// The largest mantissa of a .NET `System.Decimal` (2^96 - 1), and its largest scale.
const DECIMAL_MAX: u128 = (1 << 96) - 1;
const DECIMAL_MAX_SCALE: i64 = 28;

/// Why the JSON number `text` is not an exact `System.Decimal`, if it is not: more than
/// 28 digits after the point, or a magnitude beyond ±79228162514264337593543950335.
fn decimal_problem(text: &str) -> Option<String> {
    let out_of_range = || {
        Some(format!(
            "{text} is out of range for System.Decimal (at most ±{DECIMAL_MAX}, 28 digits after the point)"
        ))
    };
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => match e.parse::<i64>() {
            Ok(e) => (m, e),
            Err(_) => return out_of_range(),
        },
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = format!("{whole}{fraction}");
    let mut scale = fraction.len() as i64 - exponent;
    // Trailing zeros after the point carry no value (1.50 is 1.5).
    while scale > 0 && digits.ends_with('0') {
        digits.pop();
        scale -= 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return None;
    }
    if scale > DECIMAL_MAX_SCALE {
        return Some(format!(
            "{text} has more digits after the point than System.Decimal keeps (28)"
        ));
    }
    // A negative scale multiplies by ten: the mantissa grows.
    let Ok(zeros) = usize::try_from(-scale.min(0)) else {
        return out_of_range();
    };
    if digits.len() + zeros > 29 {
        return out_of_range();
    }
    let value: u128 = format!("{digits}{}", "0".repeat(zeros)).parse().ok()?;
    (value > DECIMAL_MAX).then(out_of_range).flatten()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Merges `input` over `defaults` and checks the result against `definitions`.
/// Returns the merged arguments, or every problem found.
pub fn validate(
    definitions: &[ArgumentDefinition],
    defaults: &Map<String, Value>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<FieldProblem>> {
    let mut merged = defaults.clone();
    merged.extend(input.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut problems = Vec::new();
    for (name, value) in &merged {
        match definitions.iter().find(|d| &d.name == name) {
            None => problems.push(FieldProblem {
                field: name.clone(),
                problem: format!(
                    "unknown argument; the process takes: {}",
                    if definitions.is_empty() {
                        "none".to_string()
                    } else {
                        definitions
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            }),
            Some(def) => {
                if let Some(why) = check(&shape(&def.type_name), value) {
                    problems.push(FieldProblem {
                        field: name.clone(),
                        problem: format!("{why} ({})", bare(&def.type_name)),
                    });
                }
            }
        }
    }
    for def in definitions
        .iter()
        .filter(|d| d.required && !merged.contains_key(&d.name))
    {
        problems.push(FieldProblem {
            field: def.name.clone(),
            problem: format!("required ({}) but missing", bare(&def.type_name)),
        });
    }
    let encoded = Value::Object(merged.clone()).to_string();
    if encoded.chars().count() > MAX_INPUT_ARGUMENTS {
        problems.push(FieldProblem {
            field: "(body)".into(),
            problem: format!("the input arguments encode to {} characters; Orchestrator takes at most {MAX_INPUT_ARGUMENTS}", encoded.chars().count()),
        });
    }
    if problems.is_empty() {
        Ok(merged)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
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
}
