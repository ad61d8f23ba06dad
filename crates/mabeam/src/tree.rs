//! The live supervision tree as a report ([`TreeReport`]: each process
//! with its kind, status, restart count, mailbox length) and as gauges
//! read on scrape.

use std::{collections::HashMap, sync::Arc};

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    Application, ChildKind, ChildState, DynamicSupervisor, GaugeReading, ProcessHandle, Supervisor,
    events,
};
use parking_lot::Mutex;
use serde::Serialize;

use crate::SeedService;

/// Dynamic supervisors list their children in a report only up to this
/// many (an agent supervisor may hold a million); past it, counts only.
pub const LIST_LIMIT: usize = 100;

/// The kind of a process in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessKind {
    /// An application's top supervisor.
    Application,
    /// A static supervisor.
    Supervisor,
    /// A dynamic supervisor.
    DynamicSupervisor,
    /// A worker.
    Worker,
}

/// One process of the tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessNode {
    /// Its id in its supervisor (a service's name).
    pub name: String,
    /// What it is.
    pub kind: ProcessKind,
    /// `running`, `restarting`, `stopped`, `failed`, ...
    pub status: String,
    /// Restarts by its supervisor seen since the system was built.
    pub restarts: u64,
    /// Messages waiting in its mailbox, where the mailbox tells (bounded
    /// mailboxes); `null` otherwise (supervisors' mailboxes are unbounded).
    pub mailbox_len: Option<usize>,
    /// Its children's count (`active` running, `specs` in all), for supervisors.
    pub active: Option<usize>,
    /// For supervisors: the number of children specs.
    pub specs: Option<usize>,
    /// Its children (a dynamic supervisor's only up to [`LIST_LIMIT`]).
    pub children: Vec<ProcessNode>,
}

/// The whole system: both applications, and the seed's services this build
/// does not have yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeReport {
    /// The node's namespace.
    pub namespace: String,
    /// The applications, in start order.
    pub applications: Vec<ProcessNode>,
    /// The seed's services absent from the trees, each with why (its feature
    /// is off; the connection manager without a cluster).
    pub absent: Vec<SeedService>,
}

/// Restarts per (supervisor, child), counted from `supervisor.child.restarted`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestartCounts(Arc<Mutex<HashMap<(String, String), u64>>>);

impl RestartCounts {
    pub(crate) fn restarted(&self, supervisor: &str, child: &str) {
        *self
            .0
            .lock()
            .entry((supervisor.to_owned(), child.to_owned()))
            .or_default() += 1;
    }

    /// A child stopped for good by its supervisor: forget it, so a million
    /// agents leave nothing behind.
    pub(crate) fn forget(&self, supervisor: &str, child: &str) {
        self.0
            .lock()
            .remove(&(supervisor.to_owned(), child.to_owned()));
    }

    fn of(&self, supervisor: &str, child: &str) -> u64 {
        self.0
            .lock()
            .get(&(supervisor.to_owned(), child.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Walks one application.
pub(crate) async fn application_node(app: &Application, restarts: &RestartCounts) -> ProcessNode {
    let status = app.status().await;
    let mut children = Vec::with_capacity(status.services.len());
    for service in &status.services {
        let mut node = match &service.handle {
            Some(handle) => process_node(&service.name, handle, restarts).await,
            None => ProcessNode {
                name: service.name.to_string(),
                kind: ProcessKind::Worker,
                status: String::new(),
                restarts: 0,
                mailbox_len: None,
                active: None,
                specs: None,
                children: Vec::new(),
            },
        };
        node.status = service.status.to_string();
        node.restarts = restarts.of(app.name(), &service.name);
        children.push(node);
    }
    ProcessNode {
        name: app.name().to_owned(),
        kind: ProcessKind::Application,
        status: status.application.to_string(),
        restarts: 0,
        mailbox_len: None,
        active: Some(children.iter().filter(|c| c.status == "running").count()),
        specs: Some(children.len()),
        children,
    }
}

fn process_node<'a>(
    name: &'a str,
    handle: &'a ProcessHandle,
    restarts: &'a RestartCounts,
) -> BoxFuture<'a, ProcessNode> {
    Box::pin(async move {
        let mut node = ProcessNode {
            name: name.to_owned(),
            kind: ProcessKind::Worker,
            status: if handle.is_alive() {
                "running"
            } else {
                "stopped"
            }
            .to_owned(),
            restarts: 0,
            mailbox_len: handle.mailbox_len(),
            active: None,
            specs: None,
            children: Vec::new(),
        };
        if let Some(sup) = Supervisor::from_handle(handle) {
            node.kind = ProcessKind::Supervisor;
            if let Ok(children) = sup.which_children().await {
                node.specs = Some(children.len());
                node.active = Some(
                    children
                        .iter()
                        .filter(|c| matches!(c.state, ChildState::Running(_)))
                        .count(),
                );
                for child in children {
                    let mut sub = match &child.state {
                        ChildState::Running(h) => process_node(&child.id, h, restarts).await,
                        other => ProcessNode {
                            name: child.id.to_string(),
                            kind: if child.kind == ChildKind::Supervisor {
                                ProcessKind::Supervisor
                            } else {
                                ProcessKind::Worker
                            },
                            status: if matches!(other, ChildState::Restarting) {
                                "restarting"
                            } else {
                                "stopped"
                            }
                            .to_owned(),
                            restarts: 0,
                            mailbox_len: None,
                            active: None,
                            specs: None,
                            children: Vec::new(),
                        },
                    };
                    sub.restarts = restarts.of(name, &child.id);
                    node.children.push(sub);
                }
            }
        } else if let Some(sup) = DynamicSupervisor::from_handle(handle) {
            node.kind = ProcessKind::DynamicSupervisor;
            if let Ok(counts) = sup.count_children().await {
                node.specs = Some(counts.specs);
                node.active = Some(counts.active);
                if counts.specs <= LIST_LIMIT
                    && let Ok(children) = sup.which_children().await
                {
                    for child in children {
                        if let ChildState::Running(h) = &child.state {
                            node.children
                                .push(process_node(&child.id, h, restarts).await);
                        }
                    }
                }
            }
        }
        node
    })
}

/// The gauges of one walked tree: children per supervisor, services per
/// status, the services' mailbox lengths.
pub(crate) fn gauges(app: &ProcessNode, out: &mut Vec<GaugeReading>) {
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    for service in &app.children {
        *by_status.entry(service.status.as_str()).or_default() += 1;
    }
    for (status, n) in by_status {
        out.push(GaugeReading::new(
            &events::GAUGE_APPLICATION_SERVICES,
            [app.name.as_str(), status],
            n as f64,
        ));
    }
    // Mailboxes of the services only: one series per service, never per
    // agent.
    for service in &app.children {
        if let Some(len) = service.mailbox_len {
            out.push(GaugeReading::new(
                &events::GAUGE_MAILBOX_LENGTH,
                [service.name.as_str()],
                len as f64,
            ));
        }
    }
    supervisor_gauges(app, out);
}

fn supervisor_gauges(node: &ProcessNode, out: &mut Vec<GaugeReading>) {
    if let (Some(active), Some(specs)) = (node.active, node.specs) {
        for (state, n) in [("active", active), ("specs", specs)] {
            out.push(GaugeReading::new(
                &events::GAUGE_SUPERVISOR_CHILDREN,
                [node.name.as_str(), state],
                n as f64,
            ));
        }
    }
    for child in &node.children {
        supervisor_gauges(child, out);
    }
}
