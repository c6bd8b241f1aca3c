//! Inbound webhooks (`POST /hooks/{slug}`): signature schemes and expressions.

mod custom;
pub mod expr;
mod providers;
pub mod verify;

use verify::{SchemeConfig, Verifier};

/// The verifier of a scheme with its settings (None for an unknown scheme).
pub fn verifier(scheme: &str, config: &SchemeConfig) -> Option<Box<dyn Verifier>> {
    Some(match scheme {
        "github" => Box::new(providers::GitHub),
        "stripe" => Box::new(providers::Stripe),
        "slack" => Box::new(providers::Slack),
        "shopify" => Box::new(providers::Shopify),
        "standard_webhooks" => Box::new(providers::StandardWebhooks),
        "uipath" => Box::new(providers::UiPath),
        "hmac" => Box::new(custom::Generic(config.clone())),
        "token" => Box::new(custom::Token(config.clone())),
        "none" => Box::new(custom::Public),
        _ => return None,
    })
}
