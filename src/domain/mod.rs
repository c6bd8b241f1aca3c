//! Validated domain types, parsed at the handler boundary.

pub mod api_key;
pub mod arguments;
pub mod callback_target;
pub mod connection;
pub mod folder;
pub mod hook;
pub mod job_state;
pub mod listing;
pub mod problem;
pub mod process;
pub mod queue;
