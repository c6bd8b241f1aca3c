//! Rate limits per API key and per webhook slug (GCRA, through `governor`), kept in
//! memory: each instance counts on its own.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::config::RateLimitSettings;
use crate::error::ApiError;

/// The limiters of one instance.
pub struct Limits {
    keys: Option<DefaultKeyedRateLimiter<Uuid>>,
    hooks: Option<DefaultKeyedRateLimiter<Uuid>>,
    /// Once a second per connection: noting that its Orchestrator webhooks arrive.
    heard: Option<DefaultKeyedRateLimiter<Uuid>>,
    /// Refused deliveries recorded per webhook per minute.
    refused: Option<DefaultKeyedRateLimiter<Uuid>>,
    clock: DefaultClock,
}

fn limiter(per_second: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<Uuid>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(RateLimiter::dashmap(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Limits {
    /// Limiters from the settings (0 turns one off); at most `refused_per_minute`
    /// refused deliveries per webhook are recorded.
    pub fn new(s: &RateLimitSettings, refused_per_minute: u32) -> Self {
        Limits {
            keys: limiter(s.api_key_per_second, s.api_key_burst),
            hooks: limiter(s.hook_per_second, s.hook_burst),
            heard: limiter(1, 1),
            refused: Some(RateLimiter::dashmap(
                NonZeroU32::new(refused_per_minute)
                    .map_or(Quota::per_minute(NonZeroU32::MIN), Quota::per_minute),
            )),
            clock: DefaultClock::default(),
        }
    }

    /// One request of the API key `id`; a 429 with `Retry-After` when over its rate.
    pub fn api_key(&self, id: Uuid) -> Result<(), ApiError> {
        self.check(self.keys.as_ref(), id, "this API key")
    }

    /// One delivery to the webhook `id`.
    pub fn hook(&self, id: Uuid) -> Result<(), ApiError> {
        self.check(self.hooks.as_ref(), id, "this webhook")
    }

    /// True at most once a second per connection: when to note (in the database) that
    /// its Orchestrator webhooks arrive, so events do not queue on that one row.
    pub fn note_webhook_heard(&self, connection: Uuid) -> bool {
        self.heard
            .as_ref()
            .is_none_or(|l| l.check_key(&connection).is_ok())
    }

    /// True when a refused delivery to webhook `id` may be recorded (at most
    /// `hooks.refused_per_minute` a minute); the others are only counted in `/metrics`.
    pub fn record_refused(&self, id: Uuid, per_minute: u32) -> bool {
        per_minute > 0
            && self
                .refused
                .as_ref()
                .is_none_or(|l| l.check_key(&id).is_ok())
    }

    fn check(
        &self,
        limiter: Option<&DefaultKeyedRateLimiter<Uuid>>,
        id: Uuid,
        who: &str,
    ) -> Result<(), ApiError> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(&id).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            crate::metrics::rate_limited(who);
            ApiError::TooManyRequests {
                code: "rate_limited",
                detail: format!(
                    "{who} sent more requests than its rate limit allows; retry after the time in Retry-After"
                ),
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    /// Forgets idle keys (run now and then so removed keys do not stay in memory).
    pub fn shrink(&self) {
        for l in [&self.keys, &self.hooks, &self.heard, &self.refused]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
