//! Inbound webhooks (`POST /hooks/{slug}`): signature schemes and expressions.

mod custom;
pub mod expr;
mod providers;
pub mod verify;
