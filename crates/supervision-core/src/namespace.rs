//! [`Namespace`]: which world a name lives in, production or one test.

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::{BuildHasher, Hasher},
};

use serde::{Deserialize, Serialize};

/// The world a registered name lives in. The same name in two namespaces
/// never collides, so tests run side by side each in its own namespace.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::Namespace;
///
/// let a = Namespace::unique_test();
/// let b = Namespace::unique_test();
/// assert_ne!(a, b);
/// assert_ne!(a, Namespace::Production);
/// assert_eq!(Namespace::Test(7).to_string(), "test:7");
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    /// The production namespace.
    #[default]
    Production,
    /// An isolated test namespace with its id.
    Test(u64),
}

impl Namespace {
    /// A test namespace with a fresh random id.
    pub fn unique_test() -> Self {
        // Each RandomState is seeded anew (random per thread, then stepped),
        // which gives unique ids without a counter of our own.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u8(0);
        Namespace::Test(hasher.finish())
    }

    /// Whether this is a test namespace.
    pub fn is_test(&self) -> bool {
        matches!(self, Namespace::Test(_))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespace::Production => f.write_str("production"),
            Namespace::Test(id) => write!(f, "test:{id}"),
        }
    }
}
