//! Rate limits per API key and per webhook slug (GCRA, through `governor`), and what one
//! client address may hold (connections, body bytes), kept in memory: each instance
//! counts on its own.

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use actix_web::dev::Extensions;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::config::{ClientLimitSettings, RateLimitSettings};
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

/// What each client address holds now.
#[derive(Debug, Default)]
struct Usage {
    connections: usize,
    body_bytes: usize,
}

/// Connections and body bytes per client address, shared by every worker thread.
pub struct ClientLimits {
    pub(crate) settings: ClientLimitSettings,
    by_address: Mutex<HashMap<IpAddr, Usage>>,
}

/// Kept in a connection's extensions while it is open: its place in the count.
pub struct ConnectionSlot {
    ip: IpAddr,
    limits: Arc<ClientLimits>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.update(self.ip, |u| u.connections -= 1);
    }
}

/// What a connection over its address's limit is told, before it is closed unread: the
/// whole HTTP answer, written straight to the socket.
static TOO_MANY_CONNECTIONS: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let problem = ApiError::TooManyRequests {
        code: "too_many_connections",
        detail: "this client address has too many connections open; close some and retry".into(),
        retry_after: 1,
    }
    .problem();
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: {}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        crate::error::PROBLEM_JSON,
        body.len()
    )
    .into_bytes();
    answer.extend(body);
    answer
});

impl ClientLimits {
    /// Limits with these settings.
    pub fn new(settings: ClientLimitSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            by_address: Mutex::new(HashMap::new()),
        })
    }

    fn update(&self, ip: IpAddr, f: impl FnOnce(&mut Usage)) {
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let usage = map.entry(ip).or_default();
        f(usage);
        if usage.connections == 0 && usage.body_bytes == 0 {
            map.remove(&ip);
        }
    }

    /// `HttpServer::on_connect`: counts the connection against its address. One over
    /// the limit is answered 429 and shut down at once, before a byte of it is read (so
    /// it costs no buffer), and the server sees only its end.
    pub fn on_connect(self: &Arc<Self>, conn: &dyn Any, ext: &mut Extensions) {
        let limit = self.settings.connections_per_address;
        let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let Some(ip) = stream.peer_addr().ok().map(|a| a.ip()) else {
            return;
        };
        if limit == 0 {
            return;
        }
        let mut over = false;
        self.update(ip, |u| {
            u.connections += 1;
            over = u.connections > limit;
        });
        ext.insert(ConnectionSlot {
            ip,
            limits: self.clone(),
        });
        if over {
            crate::metrics::rate_limited("this client address");
            let socket = socket2::SockRef::from(stream);
            // Non-blocking and far smaller than a socket buffer: sent whole, or not at all.
            let _ = socket.send(&TOO_MANY_CONNECTIONS);
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Takes `n` more body bytes for `ip`; false (taking nothing) when over its share.
    pub(crate) fn take_body(&self, ip: IpAddr, n: usize) -> bool {
        let limit = self.settings.body_bytes_per_address;
        if limit == 0 {
            return true;
        }
        let mut taken = false;
        self.update(ip, |u| {
            if u.body_bytes + n <= limit {
                u.body_bytes += n;
                taken = true;
            }
        });
        taken
    }

    pub(crate) fn give_back_body(&self, ip: IpAddr, n: usize) {
        if n > 0 && self.settings.body_bytes_per_address > 0 {
            self.update(ip, |u| u.body_bytes = u.body_bytes.saturating_sub(n));
        }
    }

    /// Open connections of an address (for tests and metrics).
    pub fn connections(&self, ip: IpAddr) -> usize {
        self.by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .map_or(0, |u| u.connections)
    }
}
