//! Applications, before and at start: the start order computed from the
//! dependencies (a diamond, ties by declaration order), stop in reverse,
//! the definition errors (cycle, missing dependency, duplicate, invalid
//! spec) found before anything starts, a failed start, and composition
//! (a subset pulls in its dependencies and says which; one's own services
//! beside the built-in ones).

use std::time::Duration;

use mabeam_supervision_core::{
    ApplicationError, ApplicationSpec, ApplicationStatus, ChildSpec, ErrorCode, FlagsError,
    HealthCheck, ServiceDef, ServiceStatus, Shutdown, StartError,
    testkit::{Lifecycle, TestKit},
};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(10);

/// A service named `name`: a test child of `kit`, depending on `deps`.
fn service(kit: &TestKit, name: &str, deps: &[&str]) -> ServiceDef {
    ServiceDef::child(kit.spec(name)).depends_on(deps.iter().copied())
}

/// The next `n` lifecycle reports, as ("started" | "stopped", label).
async fn reports(lifecycle: &mut UnboundedReceiver<Lifecycle>, n: usize) -> Vec<String> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let report = tokio::time::timeout(WAIT, lifecycle.recv())
            .await
            .expect("a lifecycle report in time")
            .expect("the kit is alive");
        seen.push(match report {
            Lifecycle::Started { label, .. } => format!("started {label}"),
            Lifecycle::Stopped { label, .. } => format!("stopped {label}"),
        });
    }
    seen
}

fn names(list: &[std::sync::Arc<str>]) -> Vec<&str> {
    list.iter().map(|s| &**s).collect()
}

// --- order ----------------------------------------------------------------

/// A diamond: top needs left and right, both need base. Declared upside
/// down, so the order comes from the dependencies; left and right are ready
/// together and start in declaration order (right first). Stop is the
/// exact reverse.
#[tokio::test]
async fn diamond_starts_in_dependency_order_and_stops_in_reverse() {
    let (kit, mut lifecycle) = TestKit::new();
    let spec = ApplicationSpec::new("diamond")
        .service(service(&kit, "top", &["left", "right"]))
        .service(service(&kit, "right", &["base"]))
        .service(service(&kit, "left", &["base"]))
        .service(service(&kit, "base", &[]));
    assert_eq!(
        names(&spec.start_order().unwrap()),
        ["base", "right", "left", "top"]
    );

    let app = spec.start().await.unwrap();
    assert_eq!(names(app.services()), ["base", "right", "left", "top"]);
    assert_eq!(
        reports(&mut lifecycle, 4).await,
        [
            "started base",
            "started right",
            "started left",
            "started top"
        ]
    );
    let status = app.status().await;
    assert_eq!(status.application, ApplicationStatus::Running);
    let order: Vec<&str> = status.services.iter().map(|s| &*s.name).collect();
    assert_eq!(order, ["base", "right", "left", "top"]);

    app.stop().await.unwrap();
    assert_eq!(
        reports(&mut lifecycle, 4).await,
        [
            "stopped top",
            "stopped left",
            "stopped right",
            "stopped base"
        ]
    );
    assert_eq!(kit.live(), 0);
    assert_eq!(app.status().await.application, ApplicationStatus::Stopped);
}

/// Services with no dependencies between them start as declared.
#[tokio::test]
async fn independent_services_start_in_declaration_order() {
    let (kit, mut lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("flat")
        .service(service(&kit, "c", &[]))
        .service(service(&kit, "a", &[]))
        .service(service(&kit, "b", &[]))
        .start()
        .await
        .unwrap();
    assert_eq!(
        reports(&mut lifecycle, 3).await,
        ["started c", "started a", "started b"]
    );
    app.stop().await.unwrap();
}

/// A subtree service starts its children under its own supervisor, after
/// what it depends on; it stops before it.
#[tokio::test]
async fn subtree_service_starts_after_its_dependency() {
    let (kit, mut lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("tree")
        .service(
            ServiceDef::tree(
                "pool",
                Default::default(),
                [kit.spec("pool-a"), kit.spec("pool-b")],
            )
            .depends_on(["db"]),
        )
        .service(service(&kit, "db", &[]))
        .start()
        .await
        .unwrap();
    assert_eq!(
        reports(&mut lifecycle, 3).await,
        ["started db", "started pool-a", "started pool-b"]
    );
    let pool = app.status().await.service("pool").unwrap().handle.clone();
    let pool = mabeam_supervision_core::Supervisor::from_handle(&pool.unwrap()).unwrap();
    assert_eq!(pool.count_children().await.unwrap().active, 2);

    app.stop().await.unwrap();
    assert_eq!(
        reports(&mut lifecycle, 3).await,
        ["stopped pool-b", "stopped pool-a", "stopped db"]
    );
}

// --- definition errors: nothing starts ------------------------------------

/// A cycle is an error naming the services in it (and not those merely
/// waiting on it), before anything starts.
#[tokio::test]
async fn cycle_is_an_error_naming_its_services() {
    let (kit, _lifecycle) = TestKit::new();
    let spec = ApplicationSpec::new("cyclic")
        .service(service(&kit, "ok", &[]))
        .service(service(&kit, "web", &["api"]))
        .service(service(&kit, "api", &["auth"]))
        .service(service(&kit, "auth", &["api", "ok"]));
    let err = spec.clone().start().await.unwrap_err();
    match &err {
        ApplicationError::DependencyCycle(cycle) => assert_eq!(names(cycle), ["api", "auth"]),
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert_eq!(err.code(), 1603);
    assert_eq!(err.to_string(), "dependency cycle: api -> auth -> api");
    assert!(matches!(
        spec.start_order(),
        Err(ApplicationError::DependencyCycle(_))
    ));
    assert_eq!(kit.live(), 0);
}

/// A dependency that is not defined is an error naming it and the service
/// that needs it.
#[tokio::test]
async fn missing_dependency_is_an_error_naming_both() {
    let (kit, _lifecycle) = TestKit::new();
    let err = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(service(&kit, "web", &["db", "cache"]))
        .start()
        .await
        .unwrap_err();
    match &err {
        ApplicationError::MissingDependency {
            service,
            dependency,
        } => {
            assert_eq!(&**service, "web");
            assert_eq!(&**dependency, "cache");
        }
        other => panic!("expected a missing dependency, got {other:?}"),
    }
    assert_eq!(err.code(), 1602);
    assert_eq!(kit.live(), 0);
}

/// Two services with one name are refused.
#[test]
fn duplicate_service_is_an_error() {
    let (kit, _lifecycle) = TestKit::new();
    let err = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(service(&kit, "db", &[]))
        .build()
        .unwrap_err();
    assert!(matches!(err, ApplicationError::DuplicateService(ref name) if &**name == "db"));
    assert_eq!(err.code(), 1601);
}

/// An invalid child spec, a zero health-check timeout and invalid
/// intensity are refused when the application is built.
#[tokio::test]
async fn invalid_specs_are_refused_before_anything_starts() {
    let (kit, _lifecycle) = TestKit::new();
    let err = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(ServiceDef::child(
            kit.spec("web")
                .with_shutdown(Shutdown::Timeout(Duration::ZERO)),
        ))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ApplicationError::InvalidService { ref service, error: FlagsError::ZeroShutdownTimeout(_) }
            if &**service == "web"
    ));
    assert_eq!(err.code(), 1605);

    let err = ApplicationSpec::new("app")
        .service(
            service(&kit, "db", &[])
                .with_health_check(HealthCheck::new(Duration::ZERO, |_| async { Ok(()) })),
        )
        .build()
        .unwrap_err();
    assert!(matches!(err, ApplicationError::ZeroHealthTimeout(ref s) if &**s == "db"));

    let err = ApplicationSpec::new("app")
        .with_flags(
            mabeam_supervision_core::SupervisorFlags::default().with_intensity(1, Duration::ZERO),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.code(), 1101);
    assert_eq!(kit.live(), 0);
}

/// A service that fails to start stops the services already started, in
/// reverse order; the error names it; the application is failed, and can be
/// started again once the cause is gone.
#[tokio::test]
async fn failed_start_stops_the_started_services_in_reverse() {
    let (kit, mut lifecycle) = TestKit::new();
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = broken.clone();
    let spec_kit = kit.clone();
    let flaky = ChildSpec::new("flaky", move || {
        let fail = flag.load(std::sync::atomic::Ordering::SeqCst);
        let spec = spec_kit.spec("flaky");
        async move {
            if fail {
                Err(StartError::failed("no database"))
            } else {
                spec.start().await
            }
        }
    });
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "a", &[]))
        .service(service(&kit, "b", &["a"]))
        .service(ServiceDef::child(flaky).depends_on(["b"]))
        .service(service(&kit, "c", &["flaky"]))
        .build()
        .unwrap();

    let err = app.start().await.unwrap_err();
    match &err {
        ApplicationError::StartFailed { service, .. } => assert_eq!(&**service, "flaky"),
        other => panic!("expected a start failure, got {other:?}"),
    }
    assert_eq!(err.code(), 1607);
    assert_eq!(
        reports(&mut lifecycle, 4).await,
        ["started a", "started b", "stopped b", "stopped a"]
    );
    assert_eq!(kit.live(), 0);
    let status = app.status().await;
    assert_eq!(status.application, ApplicationStatus::Failed);
    assert_eq!(status.status_of("flaky"), Some(ServiceStatus::Failed));
    assert_eq!(status.status_of("a"), Some(ServiceStatus::Stopped));

    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    app.start().await.unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    assert_eq!(kit.live(), 4);
    app.stop().await.unwrap();
    assert_eq!(kit.live(), 0);
}

// --- composition ----------------------------------------------------------

/// The built-in services of a made-up node: metrics stands alone, events
/// needs config, which needs registry.
fn builtins(kit: &TestKit) -> ApplicationSpec {
    ApplicationSpec::new("node")
        .service(service(kit, "registry", &[]))
        .service(service(kit, "metrics", &[]))
        .service(service(kit, "config", &["registry"]))
        .service(service(kit, "events", &["config"]))
}

/// A subset pulls in the dependencies of each service asked for (directly
/// or not), says which it added, and starts only those.
#[tokio::test]
async fn subset_pulls_in_its_dependencies_and_says_which() {
    let (kit, mut lifecycle) = TestKit::new();
    let subset = builtins(&kit).subset(["events"]).unwrap();
    assert_eq!(names(&subset.added), ["registry", "config"]);
    assert_eq!(
        subset.spec.service_names(),
        ["registry", "config", "events"]
    );

    let app = subset.spec.start().await.unwrap();
    assert_eq!(
        reports(&mut lifecycle, 3).await,
        ["started registry", "started config", "started events"]
    );
    assert_eq!(app.name(), "node");
    app.stop().await.unwrap();

    // Asking for a dependency too: it is not "added".
    let subset = builtins(&kit).subset(["events", "registry"]).unwrap();
    assert_eq!(names(&subset.added), ["config"]);
    // Nothing needed beyond what was asked.
    let subset = builtins(&kit).subset(["metrics"]).unwrap();
    assert!(subset.added.is_empty());
}

/// A subset asking for an unknown service is an error naming it.
#[test]
fn subset_of_an_unknown_service_is_an_error() {
    let (kit, _lifecycle) = TestKit::new();
    let err = builtins(&kit).subset(["events", "nope"]).unwrap_err();
    assert!(matches!(err, ApplicationError::UnknownService(ref s) if &**s == "nope"));
    assert_eq!(err.code(), 1604);
}

/// One's own services go beside the built-in ones and may depend on them;
/// the order still comes from the dependencies.
#[tokio::test]
async fn own_services_beside_builtins() {
    let (kit, mut lifecycle) = TestKit::new();
    let spec = builtins(&kit)
        .subset(["metrics"])
        .unwrap()
        .spec
        .service(service(&kit, "mine", &["metrics", "theirs"]))
        .service(service(&kit, "theirs", &[]));
    assert_eq!(
        names(&spec.start_order().unwrap()),
        ["metrics", "theirs", "mine"]
    );
    let app = spec.start().await.unwrap();
    assert_eq!(
        reports(&mut lifecycle, 3).await,
        ["started metrics", "started theirs", "started mine"]
    );
    app.stop().await.unwrap();

    // An own service depending on a built-in left out of the subset is a
    // missing dependency.
    let err = builtins(&kit)
        .subset(["metrics"])
        .unwrap()
        .spec
        .service(service(&kit, "mine", &["config"]))
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ApplicationError::MissingDependency { ref dependency, .. } if &**dependency == "config"
    ));
}
