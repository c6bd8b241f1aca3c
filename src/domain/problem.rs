//! What is wrong with a field of a request, and the checks every kind of name shares.

use serde::Serialize;
use utoipa::ToSchema;

/// One problem with the input, and how to fix it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"field": "in_Amount", "problem": "required (System.Decimal) but missing"}))]
pub struct FieldProblem {
    /// The field.
    pub field: String,
    /// What is wrong and what to do.
    pub problem: String,
}

pub fn problem(field: &str, text: &str) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        problem: text.into(),
    }
}

/// True for a valid object name: 1-100 letters, digits, `-`, `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// True when a value holds a control character (a NUL, a newline...): never part of a
/// real name, URL, secret or token, and a NUL cannot be stored.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}
