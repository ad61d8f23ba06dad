//! Change notifications (the seed's PubSub): [`ConfigChange`] and the
//! [`ConfigSubscription`] that receives them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

/// One change of the configuration: the path, its value before and after
/// (`None`: no value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// The path that changed.
    pub path: String,
    /// Its value before.
    pub old: Option<Value>,
    /// Its value after.
    pub new: Option<Value>,
}

/// A subscriber's end: every change under its prefix, in the order the
/// server applied them. Dropping it unsubscribes (the server drops a
/// subscriber whose end is gone at its next change, without harm).
#[derive(Debug)]
pub struct ConfigSubscription {
    pub(crate) changes: mpsc::UnboundedReceiver<ConfigChange>,
}

impl ConfigSubscription {
    /// The next change; `None` once the server is gone.
    pub async fn next(&mut self) -> Option<ConfigChange> {
        self.changes.recv().await
    }

    /// A change already received, if any, without waiting.
    pub fn try_next(&mut self) -> Option<ConfigChange> {
        self.changes.try_recv().ok()
    }
}

/// The server's side of one subscription.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) prefix: String,
    pub(crate) sender: mpsc::UnboundedSender<ConfigChange>,
}

impl Subscriber {
    /// Whether `path` is under the prefix (the empty prefix takes all).
    fn wants(&self, path: &str) -> bool {
        self.prefix.is_empty()
            || path == self.prefix
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.starts_with('.'))
            || self
                .prefix
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Sends `change` if wanted; false once the subscriber is gone.
    pub(crate) fn deliver(&self, change: &ConfigChange) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        if self.wants(&change.path) {
            return self.sender.send(change.clone()).is_ok();
        }
        true
    }
}
