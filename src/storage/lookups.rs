//! Short-lived copies of the rows every trigger reads (API keys, processes, connections
//! and webhook definitions), so `/run` and `/hooks` spend no round trips looking them up.
//!
//! They stay honest three ways:
//! - a trigger on those tables NOTIFYs [`CHANGED_CHANNEL`] on every change (from any
//!   instance, the admin API, the config file or plain SQL), and every instance drops
//!   all its copies when it hears it, or when its LISTEN connection was lost;
//! - an admin change made through this instance clears them at once, before it answers;
//! - a copy lives at most [`TTL`] whatever happens.
//!
//! A read that raced with a change never stores what it read: each clear bumps a
//! generation, and a copy is kept only if the generation did not move during the read.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

use crate::storage::api_keys::{self, ApiKeyRow};
use crate::storage::connections::{self, ConnectionRow};
use crate::storage::hooks::{self, HookRow};
use crate::storage::processes::{self, ProcessRow};

/// The channel the configuration tables' trigger NOTIFYs.
pub const CHANGED_CHANNEL: &str = "ugw_config_changed";
/// The longest a copy is used.
pub const TTL: Duration = Duration::from_secs(10);
/// Copies kept per table; past this a table starts over (only found rows are kept, so
/// only as many as there are live keys, processes and hooks).
const MAX_ENTRIES: usize = 10_000;

struct Table<K, V>(RwLock<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self(RwLock::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> Table<K, V> {
    fn get<Q: Eq + Hash + ?Sized>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
    {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, k: K, v: V) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(k, (Instant::now(), v));
    }

    fn clear(&self) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The copies one gateway instance keeps.
#[derive(Default)]
pub struct Lookups {
    generation: AtomicU64,
    keys: Table<Vec<u8>, ApiKeyRow>,
    processes: Table<String, Arc<ProcessRow>>,
    processes_by_id: Table<Uuid, Arc<ProcessRow>>,
    connections: Table<Uuid, ConnectionRow>,
    connections_by_name: Table<String, ConnectionRow>,
    hooks: Table<String, HookRow>,
}

impl Lookups {
    /// Empty copies.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Moves on at every change made or heard of: what was read under an older
    /// generation may be stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Drops every copy (a change was made or heard of).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.keys.clear();
        self.processes.clear();
        self.processes_by_id.clear();
        self.connections.clear();
        self.connections_by_name.clear();
        self.hooks.clear();
    }

    fn keep<K: Eq + Hash, V: Clone>(&self, table: &Table<K, V>, generation: u64, k: K, v: &V) {
        if self.generation.load(Ordering::SeqCst) == generation {
            table.put(k, v.clone());
        }
    }

    /// The live API key with this hash.
    pub async fn api_key(
        &self,
        pool: &PgPool,
        hash: &[u8],
    ) -> Result<Option<ApiKeyRow>, sqlx::Error> {
        if let Some(k) = self.keys.get(hash) {
            // Expiry is checked against the clock, not the copy's age.
            return Ok(k.expires_at.is_none_or(|t| t > Utc::now()).then_some(k));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = api_keys::find_live(pool, hash).await?;
        if let Some(k) = &found {
            self.keep(&self.keys, generation, hash.to_vec(), k);
        }
        Ok(found)
    }

    /// The process named `name` (shared, not copied: every `/run` asks).
    pub async fn process(
        &self,
        pool: &PgPool,
        name: &str,
    ) -> Result<Option<Arc<ProcessRow>>, sqlx::Error> {
        if let Some(p) = self.processes.get(name) {
            return Ok(Some(p));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = processes::get(pool, name).await?.map(Arc::new);
        if let Some(p) = &found {
            self.keep(&self.processes, generation, name.to_string(), p);
        }
        Ok(found)
    }

    /// The process with this id.
    pub async fn process_by_id(
        &self,
        pool: &PgPool,
        id: Uuid,
    ) -> Result<Option<Arc<ProcessRow>>, sqlx::Error> {
        if let Some(p) = self.processes_by_id.get(&id) {
            return Ok(Some(p));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = processes::get_by_id(pool, id).await?.map(Arc::new);
        if let Some(p) = &found {
            self.keep(&self.processes_by_id, generation, id, p);
        }
        Ok(found)
    }

    /// The connection with this id (its settings and sealed secrets; tokens are the
    /// token manager's business and are read under its lock).
    pub async fn connection(
        &self,
        pool: &PgPool,
        id: Uuid,
    ) -> Result<Option<ConnectionRow>, sqlx::Error> {
        if let Some(c) = self.connections.get(&id) {
            return Ok(Some(c));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = connections::get(pool, id).await?;
        if let Some(c) = &found {
            self.keep(&self.connections, generation, id, c);
        }
        Ok(found)
    }

    /// The connection with this name (or id, as text).
    pub async fn connection_named(
        &self,
        pool: &PgPool,
        name: &str,
    ) -> Result<Option<ConnectionRow>, sqlx::Error> {
        if let Some(c) = self.connections_by_name.get(name) {
            return Ok(Some(c));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = connections::find(pool, name).await?;
        if let Some(c) = &found {
            self.keep(&self.connections_by_name, generation, name.to_string(), c);
        }
        Ok(found)
    }

    /// The webhook definition with this slug.
    pub async fn hook(&self, pool: &PgPool, slug: &str) -> Result<Option<HookRow>, sqlx::Error> {
        if let Some(h) = self.hooks.get(slug) {
            return Ok(Some(h));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = hooks::get(pool, slug).await?;
        if let Some(h) = &found {
            self.keep(&self.hooks, generation, slug.to_string(), h);
        }
        Ok(found)
    }
}
