//! The subset of OData the simulator understands, evaluated over JSON entities:
//! `$filter` (eq ne gt ge lt le, and, or, parentheses, `A/B` paths; string, integer
//! with optional `L`, boolean, null and unquoted date literals), `$orderby`, `$top`
//! (at most 1000), `$skip` and `$count`.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// A parsed query.
#[derive(Debug, Default)]
pub struct Query {
    /// The filter, if any.
    pub filter: Option<Expr>,
    /// Sort keys: (path, descending).
    pub order_by: Vec<(Vec<String>, bool)>,
    /// `$top`.
    pub top: Option<usize>,
    /// `$skip`.
    pub skip: usize,
    /// `$count=true`.
    pub count: bool,
    /// `$expand` names.
    pub expand: Vec<String>,
}

/// A filter expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Both sides.
    And(Box<Expr>, Box<Expr>),
    /// Either side.
    Or(Box<Expr>, Box<Expr>),
    /// A comparison of a property with a literal.
    Cmp(Vec<String>, Op, Value),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Query {
    /// Parses the query string. Errors read like Orchestrator's (code 1000).
    pub fn parse(query_string: &str) -> Result<Self, String> {
        let params: HashMap<String, String> = serde_urlencoded::from_str(query_string)
            .map_err(|e| format!("The query string is invalid: {e}"))?;
        let mut q = Query::default();
        if let Some(f) = params.get("$filter") {
            let tokens = tokenize(f)?;
            let count = tokens
                .iter()
                .filter(|t| matches!(t, Tok::Word(w) if op(w).is_some()))
                .count();
            if count > 100 {
                return Err("The query specified in the URI is not valid. The node count limit of '100' has been exceeded.".into());
            }
            let mut p = Parser { tokens, pos: 0 };
            let e = p.or_expr()?;
            if p.pos != p.tokens.len() {
                return Err(format!(
                    "The $filter '{f}' could not be parsed near token {}.",
                    p.pos + 1
                ));
            }
            q.filter = Some(e);
        }
        if let Some(o) = params.get("$orderby") {
            for part in o.split(',') {
                let mut words = part.split_whitespace();
                let path = words.next().ok_or("$orderby has an empty expression")?;
                let desc = match words.next() {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(other) => return Err(format!("$orderby: unknown direction {other}")),
                };
                q.order_by
                    .push((path.split('/').map(String::from).collect(), desc));
            }
            if q.order_by.len() > 5 {
                return Err("The query specified in the URI is not valid. The limit of '5' for OrderBy has been exceeded.".into());
            }
        }
        if let Some(t) = params.get("$top") {
            let top: usize = t
                .parse()
                .map_err(|_| format!("$top must be a non-negative integer, got '{t}'"))?;
            if top > 1000 {
                return Err("The limit of '1000' for Top query has been exceeded. The value from the incoming request is '".to_string() + t + "'.");
            }
            q.top = Some(top);
        }
        if let Some(s) = params.get("$skip") {
            q.skip = s
                .parse()
                .map_err(|_| format!("$skip must be a non-negative integer, got '{s}'"))?;
        }
        q.count = params
            .get("$count")
            .is_some_and(|c| c.eq_ignore_ascii_case("true"));
        if let Some(e) = params.get("$expand") {
            q.expand = e.split(',').map(|s| s.trim().to_string()).collect();
        }
        Ok(q)
    }

    /// Applies filter, order, skip and top. Returns the page and the filtered count.
    pub fn apply(&self, items: Vec<Value>) -> (Vec<Value>, usize) {
        let mut items: Vec<Value> = items
            .into_iter()
            .filter(|v| self.filter.as_ref().is_none_or(|f| f.eval(v)))
            .collect();
        let count = items.len();
        if !self.order_by.is_empty() {
            items.sort_by(|a, b| {
                for (path, desc) in &self.order_by {
                    let ord = compare(lookup(a, path), lookup(b, path)).unwrap_or(Ordering::Equal);
                    let ord = if *desc { ord.reverse() } else { ord };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                Ordering::Equal
            });
        }
        let page = items
            .into_iter()
            .skip(self.skip)
            .take(self.top.unwrap_or(usize::MAX))
            .collect();
        (page, count)
    }
}

impl Expr {
    /// The only `Id`s an entity can have to match, when the filter pins them (`Id eq 1
    /// or Id eq 2`, possibly and-ed with other conditions); `None` when any Id could.
    /// Lets a list look up those entities instead of scanning them all.
    pub fn ids(&self) -> Option<BTreeSet<i64>> {
        self.pinned("Id", Value::as_i64)
    }

    /// The only References an entity can have to match, pinned the same way. Lets a
    /// lookup by Reference (the gateway's check before starting a job again) skip
    /// building every job. A value that reads as a date is not pinned: the comparison
    /// treats equal instants as equal strings.
    pub fn references(&self) -> Option<BTreeSet<String>> {
        self.pinned("Reference", |v| {
            v.as_str()
                .filter(|r| chrono::DateTime::parse_from_rfc3339(r).is_err())
                .map(str::to_string)
        })
    }

    /// The only values of `property` an entity can have to match, when the filter pins
    /// them with `eq` (or-ed, possibly and-ed with other conditions); `None` when any
    /// value could, or when `value` does not take a literal.
    fn pinned<T: Ord + Clone>(
        &self,
        property: &str,
        value: fn(&Value) -> Option<T>,
    ) -> Option<BTreeSet<T>> {
        match self {
            Expr::Cmp(path, Op::Eq, lit) if path.len() == 1 && path[0] == property => {
                value(lit).map(|v| BTreeSet::from([v]))
            }
            Expr::Cmp(..) => None,
            Expr::Or(a, b) => {
                let mut values = a.pinned(property, value)?;
                values.extend(b.pinned(property, value)?);
                Some(values)
            }
            Expr::And(a, b) => match (a.pinned(property, value), b.pinned(property, value)) {
                (Some(x), Some(y)) => Some(x.intersection(&y).cloned().collect()),
                (x, y) => x.or(y),
            },
        }
    }

    /// True if the entity matches.
    pub fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.eval(v) && b.eval(v),
            Expr::Or(a, b) => a.eval(v) || b.eval(v),
            Expr::Cmp(path, op, lit) => {
                let actual = lookup(v, path);
                match op {
                    Op::Eq => compare(actual, lit) == Some(Ordering::Equal),
                    Op::Ne => compare(actual, lit) != Some(Ordering::Equal),
                    Op::Gt => compare(actual, lit) == Some(Ordering::Greater),
                    Op::Ge => matches!(
                        compare(actual, lit),
                        Some(Ordering::Greater | Ordering::Equal)
                    ),
                    Op::Lt => compare(actual, lit) == Some(Ordering::Less),
                    Op::Le => {
                        matches!(compare(actual, lit), Some(Ordering::Less | Ordering::Equal))
                    }
                }
            }
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> &'a Value {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => {
            let dates = (
                chrono::DateTime::parse_from_rfc3339(x),
                chrono::DateTime::parse_from_rfc3339(y),
            );
            match dates {
                (Ok(x), Ok(y)) => Some(x.cmp(&y)),
                _ => Some(x.cmp(y)),
            }
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Str(String),
    Word(String),
}

fn op(w: &str) -> Option<Op> {
    Some(match w {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "lt" => Op::Lt,
        "le" => Op::Le,
        _ => return None,
    })
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '\'' => {
                chars.next();
                let mut lit = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            lit.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => lit.push(c),
                        None => {
                            return Err(
                                "An unterminated string literal was found in $filter.".into()
                            );
                        }
                    }
                }
                out.push(Tok::Str(lit));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ' ' || c == '(' || c == ')' {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Tok::Word(x)) if x == w)
    }

    fn or_expr(&mut self) -> Result<Expr, String> {
        let mut left = self.and_expr()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, String> {
        let mut left = self.primary()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.primary()?));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.tokens.get(self.pos).cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or_expr()?;
                if self.tokens.get(self.pos) != Some(&Tok::Close) {
                    return Err("A closing parenthesis is missing in $filter.".into());
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(field)) => {
                self.pos += 1;
                let Some(Tok::Word(o)) = self.tokens.get(self.pos).cloned() else {
                    return Err(format!(
                        "An operator is expected after '{field}' in $filter."
                    ));
                };
                let o = op(&o)
                    .ok_or_else(|| format!("The operator '{o}' is not supported in $filter."))?;
                self.pos += 1;
                let lit = match self.tokens.get(self.pos).cloned() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(w)) => literal(&w)?,
                    _ => return Err(format!("A value is expected after '{field}' in $filter.")),
                };
                self.pos += 1;
                Ok(Expr::Cmp(
                    field.split('/').map(String::from).collect(),
                    o,
                    lit,
                ))
            }
            _ => Err("An expression is expected in $filter.".into()),
        }
    }
}

fn literal(w: &str) -> Result<Value, String> {
    match w {
        "null" => return Ok(Value::Null),
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let digits = w.strip_suffix('L').unwrap_or(w);
    if let Ok(n) = digits.parse::<i64>() {
        return Ok(Value::from(n));
    }
    if let Ok(f) = w.parse::<f64>() {
        return Ok(Value::from(f));
    }
    if chrono::DateTime::parse_from_rfc3339(w).is_ok() {
        return Ok(Value::String(w.to_string()));
    }
    Err(format!(
        "The literal '{w}' is not valid in $filter; strings need single quotes."
    ))
}

#[cfg(test)]
mod tests;
