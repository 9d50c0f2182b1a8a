//! The decision cache (moka).
//!
//! Architecture Invariant: a cache key holds everything a decision depends on: the snapshot
//! revision, the share version and the whole request (principal, action, resource, context;
//! for ZenML questions the workspace, user, action and canonical resource string). A reload or
//! a share write changes the key, so a cached answer can never outlive the state it was
//! computed under; the TTL and size bound only memory. A Cedar request's context and
//! request-scoped entities are part of its key as the JSON text they were sent in (the same
//! text, the same decision; other text for equal values is only a miss). Errors are not cached.
//!
//! The size bound is in bytes, not entries: each entry weighs its key's and decision's heap
//! bytes plus a fixed overhead ([`CacheKey::weight`]), so a caller sending unique, long ids
//! cannot grow the cache past `--cache-max-bytes` however many requests it sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::Decision;

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Off: every request is evaluated.
    pub enabled: bool,
    /// Most bytes of cached keys and decisions (approximate heap size, see [`CacheKey::weight`]).
    pub max_bytes: u64,
    /// How long a decision is kept.
    pub ttl: Duration,
}

/// What a decision is cached under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Snapshot revision the decision was made under.
    pub revision: String,
    /// Share version the decision was made under.
    pub shares_version: u64,
    /// The request itself.
    pub request: RequestKey,
}

/// Bytes an entry costs beyond its strings: moka's entry, the key and decision structs, the
/// hash table slot (measured with the memory bench: ~200 bytes per entry).
const ENTRY_OVERHEAD: usize = 256;

// === impl CacheKey ===

impl CacheKey {
    /// The approximate heap bytes of an entry with this key and `decision`.
    pub fn weight(&self, decision: &Decision) -> u32 {
        let request = match &self.request {
            RequestKey::Zenml {
                workspace,
                user,
                action,
                resource,
            } => workspace.len() + user.len() + action.len() + resource.len(),
            RequestKey::Cedar {
                principal,
                action,
                resource,
                context,
                entities,
            } => principal.len() + action.len() + resource.len() + context.len() + entities.len(),
        };
        let strings = |list: &[String]| list.iter().map(|s| s.len() + 24).sum::<usize>();
        let total = ENTRY_OVERHEAD
            + self.revision.len()
            + request
            + strings(&decision.reasons)
            + strings(&decision.errors);
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

/// The request part of a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestKey {
    /// A ZenML question.
    Zenml {
        /// Workspace id (from the token).
        workspace: String,
        /// User id.
        user: String,
        /// Action.
        action: String,
        /// Canonical resource string.
        resource: String,
    },
    /// A Cedar API request.
    Cedar {
        /// `Type::"id"` of the principal.
        principal: String,
        /// `Type::"id"` of the action.
        action: String,
        /// `Type::"id"` of the resource.
        resource: String,
        /// The context as sent (JSON text; `{}` when there is none).
        context: String,
        /// The request-scoped entities as sent (JSON text; empty when there are none).
        entities: String,
    },
}

/// Hit and miss counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Answers computed (and then cached).
    pub misses: u64,
    /// Decisions held now (approximate: moka counts lazily).
    pub entries: u64,
    /// Their weight in bytes (approximate, like `entries`).
    pub bytes: u64,
    /// Decisions evicted for size.
    pub evictions: u64,
}

/// The cache, or a pass-through when disabled.
#[derive(Debug)]
pub struct DecisionCache {
    /// `moka::sync::Cache` rather than a locked map: lock-free reads under the ~40 concurrent
    /// callers a ZenML server has, a size bound in bytes (its weigher) with TinyLFU eviction,
    /// and TTL.
    cache: Option<moka::sync::Cache<CacheKey, Decision>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: std::sync::Arc<AtomicU64>,
}

impl DecisionCache {
    /// A cache with `config`.
    pub fn new(config: CacheConfig) -> Self {
        let evictions = std::sync::Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let cache = config.enabled.then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(|key: &CacheKey, decision: &Decision| key.weight(decision))
                .time_to_live(config.ttl)
                .eviction_listener(move |_key, _value, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .build()
        });
        Self {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
        }
    }

    /// The cached decision for `key`, or `compute`'s, which is cached when it is `Ok`.
    pub fn get_or_compute<E>(
        &self,
        key: CacheKey,
        compute: impl FnOnce() -> Result<Decision, E>,
    ) -> Result<Decision, E> {
        if let Some(decision) = self.get(&key) {
            return Ok(decision);
        }
        let decision = compute()?;
        self.insert(key, decision.clone());
        Ok(decision)
    }

    /// The cached decision for `key` (counted as a hit), if there is one: for a caller that
    /// reads the rest of its question only when it must be decided.
    pub fn get(&self, key: &CacheKey) -> Option<Decision> {
        let decision = self.cache.as_ref()?.get(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(decision)
    }

    /// Caches `decision`, computed for `key` after [`DecisionCache::get`] found none (counted
    /// as a miss).
    pub fn insert(&self, key: CacheKey, decision: Decision) {
        if let Some(cache) = &self.cache {
            self.misses.fetch_add(1, Ordering::Relaxed);
            cache.insert(key, decision);
        }
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// Counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.as_ref().map_or(0, moka::sync::Cache::entry_count),
            bytes: self.cache.as_ref().map_or(0, moka::sync::Cache::weighted_size),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(revision: &str, shares_version: u64) -> CacheKey {
        CacheKey {
            revision: revision.into(),
            shares_version,
            request: RequestKey::Zenml {
                workspace: "w".into(),
                user: "u".into(),
                action: "read".into(),
                resource: "stack".into(),
            },
        }
    }

    fn decision(allowed: bool) -> Decision {
        Decision {
            allowed,
            reasons: vec![],
            errors: vec![],
        }
    }

    #[test]
    fn a_new_revision_or_share_version_is_a_miss() {
        let cache = DecisionCache::new(CacheConfig {
            enabled: true,
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(60),
        });
        let answer = |k, allowed| {
            cache
                .get_or_compute(k, || Ok::<_, ()>(decision(allowed)))
                .unwrap()
                .allowed
        };
        assert!(answer(key("r1", 0), true));
        assert!(answer(key("r1", 0), false), "served from the cache");
        assert!(!answer(key("r2", 0), false), "another revision is computed");
        assert!(!answer(key("r1", 1), false), "another share version is computed");
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(cache.stats().misses, 3);
    }

    #[test]
    fn the_byte_bound_holds_under_unique_long_keys() {
        let max_bytes = 64 * 1024;
        let cache = DecisionCache::new(CacheConfig {
            enabled: true,
            max_bytes,
            ttl: Duration::from_secs(60),
        });
        let long = "u".repeat(4096);
        for i in 0..1000 {
            let key = CacheKey {
                revision: "r".into(),
                shares_version: 0,
                request: RequestKey::Zenml {
                    workspace: "w".into(),
                    user: format!("{long}{i}"),
                    action: "read".into(),
                    resource: "stack".into(),
                },
            };
            assert!(key.weight(&decision(true)) > 4096);
            cache.get_or_compute(key, || Ok::<_, ()>(decision(true))).unwrap();
        }
        let cache_inner = cache.cache.as_ref().unwrap();
        cache_inner.run_pending_tasks();
        let stats = cache.stats();
        assert!(stats.bytes <= max_bytes, "{stats:?}");
        // 1000 entries of > 4 KiB would be 4 MB: most were refused or evicted.
        assert!(stats.entries <= max_bytes / 4096, "{stats:?}");
    }

    #[test]
    fn errors_are_not_cached_and_off_means_off() {
        let cache = DecisionCache::new(CacheConfig {
            enabled: true,
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(60),
        });
        assert!(
            cache
                .get_or_compute(key("r", 0), || Err::<Decision, _>("boom"))
                .is_err()
        );
        assert!(
            cache
                .get_or_compute(key("r", 0), || Ok::<_, ()>(decision(true)))
                .unwrap()
                .allowed
        );
        let off = DecisionCache::new(CacheConfig {
            enabled: false,
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(60),
        });
        assert!(
            off.get_or_compute(key("r", 0), || Ok::<_, ()>(decision(true)))
                .unwrap()
                .allowed
        );
        assert!(
            !off.get_or_compute(key("r", 0), || Ok::<_, ()>(decision(false)))
                .unwrap()
                .allowed
        );
        assert_eq!(off.stats(), CacheStats::default());
    }
}
