//! Shared server state.
use std::sync::Arc;

use portcullis_core::{clock::Clock, hash::Pepper, request::KeyPolicy};
use portcullis_store::Store;

use crate::{cache::KeyCache, config::Config, metrics::Metrics, usage::UsageRecorder};

/// Shared server state: one reference count per clone (axum clones it for every extractor).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub pepper: Arc<Pepper>,
    pub clock: Arc<dyn Clock>,
    pub cache: KeyCache,
    pub metrics: Arc<Metrics>,
    pub usage: UsageRecorder,
    pub policy: KeyPolicy,
    pub max_body_bytes: usize,
}

impl AppState {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        pepper: Pepper,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(Arc::new(Shared {
            store,
            pepper: Arc::new(pepper),
            clock,
            cache: KeyCache::new(&config.cache),
            metrics: Arc::new(Metrics::default()),
            usage: UsageRecorder::default(),
            policy: config.key_policy(),
            max_body_bytes: config.max_body_bytes,
        }))
    }

    /// The context of a change made through the API.
    pub fn ctx(&self) -> crate::ops::Ctx<'_> {
        crate::ops::Ctx {
            store: self.store.as_ref(),
            pepper: &self.pepper,
            policy: &self.policy,
            now: self.clock.now(),
            cache: Some(&self.cache),
        }
    }
}
