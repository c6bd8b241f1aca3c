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
    /// `System.Double`, `System.Single`, `System.Decimal`.
    Number,
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
        "System.Double" | "System.Single" | "System.Decimal" => Shape::Number,
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
        Shape::Number => "a number".into(),
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
        (Shape::Number, Value::Number(_)) => true,
        (Shape::Integer { min, max }, Value::Number(n)) => {
            let i = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from));
            match i {
                Some(i) if i >= *min && i <= *max => true,
                Some(_) => return Some(format!("{n} is out of range ({min} to {max})")),
                None => false,
            }
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
