//! Input arguments checked against a release's definitions (`Arguments.Input`), so a
//! bad call is refused with a 422 naming each argument instead of failing in the robot.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::problem::FieldProblem;

/// One argument definition inside a release's `Arguments.Input` (Orchestrator's JSON).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentDefinition {
    /// Name, as in Studio.
    pub name: String,
    /// .NET type name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Must be given.
    #[serde(default)]
    pub required: bool,
    /// Has a default in the workflow.
    #[serde(default)]
    pub has_default: bool,
}

/// The release a process starts, as looked up in Orchestrator: its key and the
/// definitions of its input arguments (read once, typed).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRelease {
    /// The `ReleaseKey` StartJobs wants.
    pub key: Uuid,
    /// `Arguments.Input`, parsed.
    pub arguments: Vec<ArgumentDefinition>,
    /// `Arguments.Output`, parsed: what a finished job's `output` holds.
    pub outputs: Vec<ArgumentDefinition>,
}

/// Orchestrator's cap on the `InputArguments` string.
pub const MAX_INPUT_ARGUMENTS: usize = 10_000;

/// The JSON shape a .NET type takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `System.String`, `System.Char`, `System.TimeSpan`, `System.Uri`.
    String,
    /// `System.Guid`: a UUID string.
    Guid,
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
    /// `System.Nullable<T>` (`int?`): `T`, or null.
    Nullable(Box<Shape>),
}

impl Shape {
    /// Whether `null` is a value of this type: reference types and `Nullable<T>` take it,
    /// value types (numbers, booleans, dates, GUIDs) do not.
    pub fn takes_null(&self) -> bool {
        matches!(
            self,
            Shape::String | Shape::Array(_) | Shape::Object | Shape::Any | Shape::Nullable(_)
        )
    }
}

/// The type name without its assembly qualification: `System.String, System.Private.CoreLib, ...` -> `System.String`.
pub fn bare(type_name: &str) -> &str {
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
    if let Some(inner) = t.strip_prefix("System.Nullable`1[") {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        let inner = inner.trim_start_matches('[').trim_end_matches(']');
        return Shape::Nullable(Box::new(shape(inner)));
    }
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
        "System.String" | "System.Char" | "System.TimeSpan" | "System.Uri" => Shape::String,
        "System.Guid" => Shape::Guid,
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
        Shape::Guid => "a GUID string".into(),
        Shape::Nullable(inner) => format!("{} or null", describe(inner)),
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
        (_, Value::Null) => s.takes_null(),
        (Shape::Any, _) => true,
        (Shape::Nullable(inner), v) => return check(inner, v),
        (Shape::Guid, Value::String(t)) => Uuid::parse_str(t).is_ok(),
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

/// When the arguments encode to more than Orchestrator's 10,000 characters: a problem
/// against the largest argument, naming the largest ones and their sizes.
fn too_long(merged: &Map<String, Value>) -> Option<FieldProblem> {
    let total = Value::Object(merged.clone()).to_string().chars().count();
    if total <= MAX_INPUT_ARGUMENTS {
        return None;
    }
    let mut sizes: Vec<(&String, usize)> = merged
        .iter()
        .map(|(k, v)| (k, v.to_string().chars().count()))
        .collect();
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let largest = sizes
        .iter()
        .take(3)
        .map(|(k, n)| format!("{k} ({n} characters)"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(FieldProblem {
        field: sizes
            .first()
            .map_or_else(|| "(body)".into(), |(k, _)| (*k).clone()),
        problem: format!(
            "the input arguments encode to {total} characters and Orchestrator takes at most \
             {MAX_INPUT_ARGUMENTS}; the largest: {largest}"
        ),
    })
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
            Some(def) if def.required && value.is_null() => problems.push(FieldProblem {
                field: name.clone(),
                problem: format!(
                    "required ({}): give a value; null is not accepted",
                    bare(&def.type_name)
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
    if let Some(too_long) = too_long(&merged) {
        problems.push(too_long);
    }
    if problems.is_empty() {
        Ok(merged)
    } else {
        Err(problems)
    }
}

pub mod schema;

#[cfg(test)]
mod tests;
