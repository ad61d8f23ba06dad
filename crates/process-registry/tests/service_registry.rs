//! ServiceRegistry: lookups, health checks, waiting for a service, service
//! info and fallbacks.

use std::{sync::Arc, time::Duration};

use kameo::{
    Actor,
    message::{Context, Message},
};
use mabeam_process_registry::{
    Answer, FallbackSource, LastValueCache, ProcessRegistry, ServiceError, ServiceOptions,
    ServiceRegistry,
};
use mabeam_supervision_core::{
    CheckHealth, ErrorCode, Health, HealthCheck, Namespace, ProcessHandle, Registry, RegistryError,
    RegistryEvents, Stopper, Subscription, Telemetry, Topic,
};
use serde_json::json;

/// A service whose health and answers the test sets.
#[derive(Actor)]
struct Svc {
    healthy: bool,
    hang: bool,
}

impl Svc {
    fn ok() -> Self {
        Svc {
            healthy: true,
            hang: false,
        }
    }
}

impl Message<CheckHealth> for Svc {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: CheckHealth, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.hang {
            std::future::pending::<()>().await;
        }
        if self.healthy {
            Ok(())
        } else {
            Err("disk full".into())
        }
    }
}

struct Price;

impl Message<Price> for Svc {
    type Reply = Result<u64, String>;

    async fn handle(&mut self, _: Price, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.hang {
            std::future::pending::<()>().await;
        }
        if self.healthy {
            Ok(42)
        } else {
            Err("no price".into())
        }
    }
}

#[derive(Actor)]
struct Other;

fn services() -> (Arc<ProcessRegistry>, ServiceRegistry) {
    let registry = Arc::new(ProcessRegistry::new(Telemetry::disabled()));
    let services = ServiceRegistry::new(
        registry.clone(),
        Namespace::unique_test(),
        Telemetry::disabled(),
    );
    (registry, services)
}

async fn spawn(svc: Svc) -> ProcessHandle {
    ProcessHandle::spawn::<Svc>(svc).await.unwrap()
}

fn checked() -> ServiceOptions {
    ServiceOptions::default()
        .with_health_check(HealthCheck::message::<Svc>(Duration::from_secs(60)))
}

// A missing service is a stable, typed error.
#[tokio::test]
async fn lookup_of_a_missing_service_is_not_found() {
    let (_, services) = services();
    let err = services.lookup("nope").unwrap_err();
    assert!(matches!(&err, ServiceError::NotFound(name) if &**name == "nope"));
    assert_eq!(err.code(), 2001);
    let svc = spawn(Svc::ok()).await;
    services
        .register_service("db", svc.clone(), ServiceOptions::default())
        .unwrap();
    assert_eq!(services.lookup("db").unwrap(), svc);
    svc.stop().await;
    assert!(matches!(
        services.lookup("db"),
        Err(ServiceError::NotFound(_))
    ));
}

// A second registration under a held name is the registry's error.
#[tokio::test]
async fn taken_name_is_a_registry_error() {
    let (_, services) = services();
    let (a, b) = (spawn(Svc::ok()).await, spawn(Svc::ok()).await);
    services
        .register_service("db", a.clone(), checked())
        .unwrap();
    let err = services
        .register_service("db", b.clone(), ServiceOptions::default())
        .unwrap_err();
    assert!(matches!(
        err,
        ServiceError::Registry(mabeam_supervision_core::RegistryError::AlreadyRegistered { .. })
    ));
    assert_eq!(err.code(), 2004);
    // The refused registration did not replace the first one's health check.
    let status = services
        .health_check("db", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(status, Health::Healthy);
    a.stop().await;
    b.stop().await;
}

// Healthy, failed (the service's reason), dead, and not found.
#[tokio::test]
async fn health_check_asks_the_live_process() {
    let (_, services) = services();
    let good = spawn(Svc::ok()).await;
    let bad = spawn(Svc {
        healthy: false,
        hang: false,
    })
    .await;
    services
        .register_service("good", good.clone(), checked())
        .unwrap();
    services
        .register_service("bad", bad.clone(), checked())
        .unwrap();
    let t = Duration::from_secs(1);
    assert_eq!(
        services.health_check("good", t).await.unwrap(),
        Health::Healthy
    );
    assert_eq!(
        services.health_check("bad", t).await.unwrap(),
        Health::Unhealthy("disk full".into())
    );
    // A service whose process has exited is forgotten, as in the registry.
    good.stop().await;
    assert!(matches!(
        services.health_check("good", t).await,
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        services.health_check("never", t).await,
        Err(ServiceError::NotFound(_))
    ));
    bad.stop().await;
}

// A service that does not answer in time is timed out (paused clock).
#[tokio::test(start_paused = true)]
async fn health_check_times_out() {
    let (_, services) = services();
    let slow = spawn(Svc {
        healthy: true,
        hang: true,
    })
    .await;
    services
        .register_service("slow", slow.clone(), checked())
        .unwrap();
    let started = tokio::time::Instant::now();
    let status = services
        .health_check("slow", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(status, Health::TimedOut(Duration::from_secs(3)));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    slow.kill();
}

// A check expecting another actor type fails with a reason; a closure
// check runs against the handle.
#[tokio::test]
async fn health_check_kinds() {
    let (_, services) = services();
    let other = ProcessHandle::spawn::<Other>(Other).await.unwrap();
    services
        .register_service("other", other.clone(), checked())
        .unwrap();
    let status = services
        .health_check("other", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(status, Health::Unhealthy(reason) if reason.contains("not a")));

    let custom = spawn(Svc::ok()).await;
    let check = HealthCheck::new(Duration::from_secs(1), |handle: ProcessHandle| async move {
        let svc = handle.downcast::<Svc>().ok_or("wrong type")?;
        let price = svc.ask(Price).await.map_err(|e| e.to_string())?;
        if price > 100 {
            Err("too expensive".to_string())
        } else {
            Ok(())
        }
    });
    services
        .register_service(
            "custom",
            custom.clone(),
            ServiceOptions::default().with_health_check(check),
        )
        .unwrap();
    assert!(
        services
            .health_check("custom", Duration::from_secs(1))
            .await
            .unwrap()
            .is_healthy()
    );
    other.stop().await;
    custom.stop().await;
}

// wait_for_service returns at once for a registered service, wakes on the
// registration of a later one, and times out on the paused clock.
#[tokio::test(start_paused = true)]
async fn wait_for_service_wakes_on_registration() {
    let (_, services) = services();
    let waiter = {
        let services = services.clone();
        tokio::spawn(async move {
            services
                .wait_for_service("late", Duration::from_secs(3600))
                .await
        })
    };
    tokio::task::yield_now().await;
    let late = spawn(Svc::ok()).await;
    let registered_at = tokio::time::Instant::now();
    services
        .register_service("late", late.clone(), ServiceOptions::default())
        .unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), late);
    assert_eq!(
        registered_at.elapsed(),
        Duration::ZERO,
        "woken by the event, not a poll"
    );

    assert_eq!(
        services
            .wait_for_service("late", Duration::from_secs(1))
            .await
            .unwrap(),
        late
    );

    let err = services
        .wait_for_service("never", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Timeout { after, .. } if after == Duration::from_secs(5)));
    assert_eq!(err.code(), 2002);
    late.stop().await;
}

// service_info lists every live service with its uptime, including one
// registered directly in the registry; one whose process exited is gone.
#[tokio::test(start_paused = true)]
async fn service_info_lists_alive_flags_and_uptimes() {
    let (registry, services) = services();
    let (a, b, c) = (
        spawn(Svc::ok()).await,
        spawn(Svc::ok()).await,
        spawn(Svc::ok()).await,
    );
    services
        .register_service(
            "a",
            a.clone(),
            ServiceOptions::default().with_metadata(json!({"v": 1})),
        )
        .unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    services
        .register_service("b", b.clone(), ServiceOptions::default())
        .unwrap();
    registry
        .register(services.namespace(), "c", c.clone(), json!(null))
        .unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    b.stop().await;

    let info = services.service_info();
    let summary: Vec<_> = info
        .iter()
        .map(|i| (i.name.to_string(), i.alive, i.uptime))
        .collect();
    assert_eq!(
        summary,
        [
            ("a".to_owned(), true, Some(Duration::from_secs(15))),
            ("c".to_owned(), true, None),
        ]
    );
    assert_eq!(info[0].metadata, json!({"v": 1}));
    assert_eq!(info[1].handle, c);
    assert_eq!(services.recorded_services(), 1, "b's record is dropped");
    a.stop().await;
    c.stop().await;
}

// When the service is unavailable the fallback answers, and says so.
#[tokio::test(start_paused = true)]
async fn fallback_answers_when_the_service_is_unavailable() {
    let (_, services) = services();
    let cache = LastValueCache::new();
    let ask_price = |handle: ProcessHandle| async move {
        let svc = handle.downcast::<Svc>().ok_or("wrong type")?;
        svc.ask(Price).await.map_err(|e| e.to_string())
    };
    let t = Duration::from_secs(1);

    // Nothing registered, nothing cached: the service's error.
    let err = services
        .call("prices", t, ask_price, &cache)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)));

    // A live answer is cached.
    let svc = spawn(Svc::ok()).await;
    services
        .register_service("prices", svc.clone(), ServiceOptions::default())
        .unwrap();
    let answer = services.call("prices", t, ask_price, &cache).await.unwrap();
    assert!(matches!(answer, Answer::Live(42)));
    assert_eq!(cache.fallback("prices"), Some(42));

    // The service is gone: the cache answers, and says so.
    svc.stop().await;
    let answer = services.call("prices", t, ask_price, &cache).await.unwrap();
    assert!(answer.is_fallback());
    assert_eq!(*answer.value(), 42);
    assert!(matches!(
        answer,
        Answer::Fallback {
            reason: ServiceError::NotFound(_),
            ..
        }
    ));

    // It fails: the cache answers with the failure as reason.
    let failing = spawn(Svc {
        healthy: false,
        hang: false,
    })
    .await;
    services
        .register_service("prices", failing.clone(), ServiceOptions::default())
        .unwrap();
    let answer = services.call("prices", t, ask_price, &cache).await.unwrap();
    assert!(matches!(
        answer,
        Answer::Fallback {
            reason: ServiceError::CallFailed { .. },
            ..
        }
    ));

    // It hangs: the cache answers once the timeout ran out.
    failing.stop().await;
    let slow = spawn(Svc {
        healthy: true,
        hang: true,
    })
    .await;
    services
        .register_service("prices", slow.clone(), ServiceOptions::default())
        .unwrap();
    let answer = services.call("prices", t, ask_price, &cache).await.unwrap();
    assert!(matches!(
        answer,
        Answer::Fallback {
            reason: ServiceError::Timeout { .. },
            value: 42
        }
    ));
    slow.kill();
}

// Services work over any Registry, e.g. behind Arc<dyn Registry>.
#[tokio::test]
async fn over_the_registry_contract() {
    let registry: Arc<dyn Registry> = Arc::new(ProcessRegistry::new(Telemetry::disabled()));
    let services = ServiceRegistry::new(
        registry.clone(),
        Namespace::unique_test(),
        Telemetry::disabled(),
    );
    let svc = spawn(Svc::ok()).await;
    services
        .register_service("x", svc.clone(), ServiceOptions::default())
        .unwrap();
    assert_eq!(
        registry.lookup(services.namespace(), "x"),
        Some(svc.clone())
    );
    assert_eq!(services.unregister_service("x").unwrap(), svc);
    assert!(services.service_info().is_empty());
    svc.stop().await;
}

// The service registry keeps no service alive: a service whose other
// references drop stops, and its record is then dropped.
#[tokio::test]
async fn a_service_is_not_kept_alive_and_its_record_goes() {
    let (_, services) = services();
    let svc = spawn(Svc::ok()).await;
    services
        .register_service("s", svc.clone(), checked())
        .unwrap();
    let weak = svc.downgrade();
    drop(svc);
    tokio::time::timeout(Duration::from_secs(10), weak.exited())
        .await
        .expect("the service stopped");
    assert!(services.service_info().is_empty());
    assert_eq!(services.recorded_services(), 0);
    assert!(matches!(
        services.health_check("s", Duration::from_secs(1)).await,
        Err(ServiceError::NotFound(_))
    ));
}

/// A registry that runs a hook inside the first `register`, before
/// forwarding it: a concurrent caller that gets in between.
struct Interleaved {
    inner: ProcessRegistry,
    hook: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Registry for Interleaved {
    fn register(
        &self,
        ns: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: serde_json::Value,
    ) -> Result<(), RegistryError> {
        let hook = self.hook.lock().take();
        if let Some(hook) = hook {
            hook();
        }
        self.inner.register(ns, name, handle, metadata)
    }
    fn register_with_stopper(
        &self,
        ns: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: serde_json::Value,
        stopper: Stopper,
    ) -> Result<(), RegistryError> {
        self.inner
            .register_with_stopper(ns, name, handle, metadata, stopper)
    }
    fn unregister(&self, ns: &Namespace, name: &str) -> Result<ProcessHandle, RegistryError> {
        self.inner.unregister(ns, name)
    }
    fn unregister_if(&self, ns: &Namespace, name: &str, handle: &ProcessHandle) -> bool {
        self.inner.unregister_if(ns, name, handle)
    }
    fn lookup(&self, ns: &Namespace, name: &str) -> Option<ProcessHandle> {
        self.inner.lookup(ns, name)
    }
    fn lookup_with_metadata(
        &self,
        ns: &Namespace,
        name: &str,
    ) -> Option<(ProcessHandle, serde_json::Value)> {
        self.inner.lookup_with_metadata(ns, name)
    }
    fn update_metadata(
        &self,
        ns: &Namespace,
        name: &str,
        metadata: serde_json::Value,
    ) -> Result<(), RegistryError> {
        self.inner.update_metadata(ns, name, metadata)
    }
    fn list(&self, ns: &Namespace) -> Vec<(Arc<str>, ProcessHandle, serde_json::Value)> {
        self.inner.list(ns)
    }
    fn count(&self, ns: &Namespace) -> usize {
        self.inner.count(ns)
    }
    fn join(
        &self,
        ns: &Namespace,
        group: &str,
        handle: ProcessHandle,
    ) -> Result<(), RegistryError> {
        self.inner.join(ns, group, handle)
    }
    fn leave(
        &self,
        ns: &Namespace,
        group: &str,
        handle: &ProcessHandle,
    ) -> Result<(), RegistryError> {
        self.inner.leave(ns, group, handle)
    }
    fn members(&self, ns: &Namespace, group: &str) -> Vec<ProcessHandle> {
        self.inner.members(ns, group)
    }
    fn leave_all(&self, ns: &Namespace, handle: &ProcessHandle) -> usize {
        self.inner.leave_all(ns, handle)
    }
    fn keys(&self, ns: &Namespace, handle: &ProcessHandle) -> Vec<Arc<str>> {
        self.inner.keys(ns, handle)
    }
    fn subscribe(&self, ns: &Namespace) -> RegistryEvents {
        self.inner.subscribe(ns)
    }
    fn subscribe_to(&self, ns: &Namespace, topic: Topic) -> Subscription {
        self.inner.subscribe_to(ns, topic)
    }
}

// Two callers register one service name at once; the one that loses rolls
// back its own record only, never the winner's.
#[tokio::test]
async fn a_losing_register_service_keeps_the_winners_record() {
    let registry = Arc::new(Interleaved {
        inner: ProcessRegistry::new(Telemetry::disabled()),
        hook: parking_lot::Mutex::new(None),
    });
    let services = ServiceRegistry::new(
        registry.clone(),
        Namespace::unique_test(),
        Telemetry::disabled(),
    );
    let (loser, winner) = (
        spawn(Svc::ok()).await,
        spawn(Svc {
            healthy: false,
            hang: false,
        })
        .await,
    );
    *registry.hook.lock() = Some(Box::new({
        let (services, winner) = (services.clone(), winner.clone());
        move || {
            services
                .register_service("x", winner, checked())
                .expect("the winner registers");
        }
    }));
    let lost = services.register_service("x", loser.clone(), checked());
    assert!(matches!(lost, Err(ServiceError::Registry(_))), "{lost:?}");
    assert_eq!(services.lookup("x").unwrap(), winner);
    // The winner's record (its health check) is kept.
    assert_eq!(
        services
            .health_check("x", Duration::from_secs(1))
            .await
            .unwrap(),
        Health::Unhealthy("disk full".into())
    );
    assert!(services.service_info()[0].uptime.is_some());
    loser.stop().await;
    winner.stop().await;
}

// wait_for_service hears only its own name: a flood of other names'
// changes neither wakes it nor makes it lag (here with room for one event).
#[tokio::test]
async fn wait_for_service_hears_only_its_name() {
    let registry = Arc::new(ProcessRegistry::with_event_buffer(Telemetry::disabled(), 1));
    let services = ServiceRegistry::new(
        registry.clone(),
        Namespace::unique_test(),
        Telemetry::disabled(),
    );
    let waiter = {
        let services = services.clone();
        tokio::spawn(async move {
            services
                .wait_for_service("x", Duration::from_secs(3600))
                .await
        })
    };
    tokio::task::yield_now().await;
    let other = spawn(Svc::ok()).await;
    for i in 0..5 {
        registry
            .register(
                services.namespace(),
                &format!("other-{i}"),
                other.clone(),
                json!(null),
            )
            .unwrap();
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());
    let x = spawn(Svc::ok()).await;
    services
        .register_service("x", x.clone(), ServiceOptions::default())
        .unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), x);
    other.stop().await;
    x.stop().await;
}
