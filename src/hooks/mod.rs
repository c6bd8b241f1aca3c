//! Inbound webhooks (`POST /hooks/{slug}`): signature schemes and expressions.

pub mod expr;
pub mod verify;
