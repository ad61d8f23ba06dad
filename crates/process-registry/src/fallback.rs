//! Fallbacks: a [`FallbackSource`] the caller provides answers when a
//! service is unavailable, and the [`Answer`] says where it came from.

use std::{collections::HashMap, fmt, sync::Arc};

use parking_lot::Mutex;

use crate::ServiceError;

/// Where a value comes from when a service cannot give it: a cache, a
/// default, a replica. The [`ServiceRegistry`](crate::ServiceRegistry)
/// asks it only when the service is unavailable (not registered, failed,
/// or too slow), and [`remember`](FallbackSource::remember)s every live
/// answer so a cache can keep it.
pub trait FallbackSource<T>: Send + Sync {
    /// The value to answer for `service` instead of the service, if any.
    fn fallback(&self, service: &str) -> Option<T>;

    /// Called with each answer `service` gave; does nothing by default.
    fn remember(&self, service: &str, value: &T) {
        let _ = (service, value);
    }
}

/// A [`FallbackSource`] that answers the last value each service gave.
///
/// ```
/// use mabeam_process_registry::{FallbackSource, LastValueCache};
///
/// let cache = LastValueCache::new();
/// assert_eq!(cache.fallback("prices"), None);
/// cache.remember("prices", &42);
/// assert_eq!(cache.fallback("prices"), Some(42));
/// ```
pub struct LastValueCache<T> {
    values: Mutex<HashMap<Arc<str>, T>>,
}

impl<T> LastValueCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        LastValueCache {
            values: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Default for LastValueCache<T> {
    fn default() -> Self {
        LastValueCache::new()
    }
}

impl<T> fmt::Debug for LastValueCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastValueCache")
            .field("services", &self.values.lock().len())
            .finish()
    }
}

impl<T: Clone + Send> FallbackSource<T> for LastValueCache<T> {
    fn fallback(&self, service: &str) -> Option<T> {
        self.values.lock().get(service).cloned()
    }

    fn remember(&self, service: &str, value: &T) {
        self.values.lock().insert(Arc::from(service), value.clone());
    }
}

/// An answer, and whether the service gave it or the fallback did.
#[derive(Debug, Clone)]
pub enum Answer<T> {
    /// The service answered.
    Live(T),
    /// The service was unavailable; the fallback answered.
    Fallback {
        /// The fallback's value.
        value: T,
        /// Why the service could not answer.
        reason: ServiceError,
    },
}

impl<T> Answer<T> {
    /// Whether the fallback answered.
    pub fn is_fallback(&self) -> bool {
        matches!(self, Answer::Fallback { .. })
    }

    /// The value, wherever it came from.
    pub fn value(&self) -> &T {
        match self {
            Answer::Live(value) | Answer::Fallback { value, .. } => value,
        }
    }

    /// The value, wherever it came from.
    pub fn into_value(self) -> T {
        match self {
            Answer::Live(value) | Answer::Fallback { value, .. } => value,
        }
    }
}
