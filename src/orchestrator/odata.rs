//! OData `$filter`s the gateway builds: by Reference or by Id, `or`-joined, packed into
//! runs short enough for one request.

/// `Reference eq 'a' or Reference eq 'b' ...`, quotes doubled as OData wants.
pub fn reference_filter(references: &[String]) -> String {
    references
        .iter()
        .map(|r| format!("Reference eq '{}'", r.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Splits `items` into runs for `... or ...` filters: at most `most` clauses each, and
/// at most `max_chars` characters of filter (`clause_len` is one clause's length).
pub fn pack<T>(
    items: &[T],
    most: usize,
    max_chars: usize,
    clause_len: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let (mut start, mut chars) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let len = clause_len(item) + if i > start { 4 } else { 0 };
        if i > start && (i - start >= most.max(1) || chars + len > max_chars) {
            runs.push(&items[start..i]);
            start = i;
            chars = clause_len(item);
        } else {
            chars += len;
        }
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// `Id eq 1 or Id eq 2 ...`.
pub fn id_filter(ids: &[i64]) -> String {
    ids.iter()
        .map(|id| format!("Id eq {id}"))
        .collect::<Vec<_>>()
        .join(" or ")
}
