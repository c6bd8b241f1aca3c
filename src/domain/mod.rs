//! Validated domain types, parsed at the handler boundary.

pub mod connection;
pub mod process;
