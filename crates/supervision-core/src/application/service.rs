//! What a service is: the [`Service`] trait, its [`ServiceStart`] (one
//! child or a subtree), its optional [`HealthCheck`], and [`ServiceDef`],
//! the ready-made implementation.

use std::{fmt, sync::Arc};

use crate::{ChildSpec, HealthCheck, Supervisor, SupervisorFlags};

/// One service of an [`Application`](crate::Application): a name, the
/// services it depends on, how to start it, and an optional health check.
///
/// The application starts a service after every service it depends on,
/// stops it before them, and runs it as one child of its supervisor, whose
/// id is the service's name. Implement it for your own types, or use
/// [`ServiceDef`].
///
/// The trait is object safe: applications hold services as
/// `Arc<dyn Service>`.
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ChildSpec, Service, ServiceStart};
///
/// #[derive(Actor)]
/// struct Cache;
///
/// struct CacheService;
///
/// impl Service for CacheService {
///     fn name(&self) -> &str {
///         "cache"
///     }
///     fn dependencies(&self) -> Vec<&str> {
///         vec!["config"]
///     }
///     fn start_spec(&self) -> ServiceStart {
///         ChildSpec::actor::<Cache>("cache", || Cache).into()
///     }
/// }
///
/// assert_eq!(CacheService.dependencies(), ["config"]);
/// assert!(CacheService.health_check().is_none());
/// ```
pub trait Service: Send + Sync + 'static {
    /// The service's name, unique within its application; also its child id.
    fn name(&self) -> &str;

    /// The names of the services it depends on (none by default).
    fn dependencies(&self) -> Vec<&str> {
        Vec::new()
    }

    /// How to start it; called each time the application starts. The id of
    /// the child spec is replaced by the service's name.
    fn start_spec(&self) -> ServiceStart;

    /// A check of the running service (none by default), run on its
    /// process by [`Application::health`](crate::Application::health).
    fn health_check(&self) -> Option<HealthCheck> {
        None
    }
}

/// How a service starts: one child, or a subtree (a supervisor with its own
/// children, started with [`Supervisor::child_spec`]).
#[derive(Debug, Clone)]
pub enum ServiceStart {
    /// One child (a worker, or any supervisor spec).
    Child(ChildSpec),
    /// A static supervisor with these flags and children.
    Tree {
        /// The subtree supervisor's flags.
        flags: SupervisorFlags,
        /// Its children, in start order.
        children: Vec<ChildSpec>,
    },
}

impl ServiceStart {
    /// The child spec the application's supervisor gets for the service
    /// `name`.
    pub(crate) fn into_spec(self, name: &str) -> ChildSpec {
        match self {
            ServiceStart::Child(mut spec) => {
                spec.id = name.into();
                spec
            }
            ServiceStart::Tree { flags, children } => Supervisor::child_spec(name, flags, children),
        }
    }
}

impl From<ChildSpec> for ServiceStart {
    fn from(spec: ChildSpec) -> Self {
        ServiceStart::Child(spec)
    }
}

/// A [`Service`] built from values: a name, a start, dependencies and an
/// optional health check.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ChildSpec, HealthCheck, Service, ServiceDef, SupervisorFlags};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// let db = ServiceDef::child(ChildSpec::actor::<Worker>("db", || Worker));
/// let web = ServiceDef::new("web", ChildSpec::actor::<Worker>("web", || Worker))
///     .depends_on(["db"])
///     .with_health_check(HealthCheck::new(Duration::from_secs(1), |_| async { Ok(()) }));
/// let pool = ServiceDef::tree(
///     "pool",
///     SupervisorFlags::default(),
///     [ChildSpec::actor::<Worker>("a", || Worker), ChildSpec::actor::<Worker>("b", || Worker)],
/// );
/// assert_eq!(db.name(), "db");
/// assert_eq!(web.dependencies(), ["db"]);
/// assert!(pool.dependencies().is_empty());
/// ```
#[derive(Clone)]
pub struct ServiceDef {
    name: Arc<str>,
    dependencies: Vec<Arc<str>>,
    start: ServiceStart,
    health: Option<HealthCheck>,
}

impl ServiceDef {
    /// A service named `name`, started by `start` (a [`ChildSpec`] or a
    /// [`ServiceStart`]).
    pub fn new(name: impl Into<Arc<str>>, start: impl Into<ServiceStart>) -> Self {
        ServiceDef {
            name: name.into(),
            dependencies: Vec::new(),
            start: start.into(),
            health: None,
        }
    }

    /// A service of one child, named by the spec's id.
    pub fn child(spec: ChildSpec) -> Self {
        ServiceDef::new(spec.id.clone(), spec)
    }

    /// A service that is a subtree: a static supervisor named `name` with
    /// `flags` and `children`.
    pub fn tree(
        name: impl Into<Arc<str>>,
        flags: SupervisorFlags,
        children: impl IntoIterator<Item = ChildSpec>,
    ) -> Self {
        ServiceDef::new(
            name,
            ServiceStart::Tree {
                flags,
                children: children.into_iter().collect(),
            },
        )
    }

    /// Adds services this one depends on.
    pub fn depends_on<I>(mut self, dependencies: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Arc<str>>,
    {
        self.dependencies
            .extend(dependencies.into_iter().map(Into::into));
        self
    }

    /// Sets the health check.
    pub fn with_health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }
}

impl Service for ServiceDef {
    fn name(&self) -> &str {
        &self.name
    }

    fn dependencies(&self) -> Vec<&str> {
        self.dependencies.iter().map(|d| &**d).collect()
    }

    fn start_spec(&self) -> ServiceStart {
        self.start.clone()
    }

    fn health_check(&self) -> Option<HealthCheck> {
        self.health.clone()
    }
}

impl fmt::Debug for ServiceDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceDef")
            .field("name", &self.name)
            .field("dependencies", &self.dependencies)
            .field("start", &self.start)
            .field("health", &self.health)
            .finish()
    }
}
