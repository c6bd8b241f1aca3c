//! The use cases, below the routes and above storage and Orchestrator: no actix types and
//! no SQL text here.

pub mod config_apply;
pub mod dispatch;
pub mod hook_delivery;
pub mod submit;
