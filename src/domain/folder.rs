//! How a folder of an Orchestrator tenant is addressed: by id, key or path.

/// How a folder is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderRef {
    /// The int64 `Id` (it changes if the licence plan changes).
    Id(i64),
    /// The stable GUID.
    Key(String),
    /// The full path, e.g. `Finance/AP`.
    Path(String),
}

impl FolderRef {
    /// Reads what an operator wrote: digits are an id, a GUID is a key, anything else a path.
    pub fn parse(s: &str) -> Self {
        if let Ok(id) = s.parse::<i64>() {
            FolderRef::Id(id)
        } else if s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            FolderRef::Key(s.to_string())
        } else {
            FolderRef::Path(s.to_string())
        }
    }
}
