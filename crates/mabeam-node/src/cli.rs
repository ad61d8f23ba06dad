//! The commands that speak to a running node over its HTTP API, as
//! `observer_cli` or `kubectl` do: `mabeam status`, `mabeam agents
//! [list|start|stop|ask]`, `mabeam events [--follow]`, `mabeam services
//! restart NAME`. Each finds the node as `mabeam run` does (`--http ADDR`,
//! default `127.0.0.1:4000`; the bearer token from `--data-dir DIR`,
//! default `./mabeam-data`), prints a table for people or JSON for
//! scripts (`--json`), and says what to do when it fails (which address
//! was tried, where the token was looked for).
//!
//! HTTP goes through hyper's client ([`NodeClient`]), not a hand-written one.

mod http;
mod table;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::{DEFAULT_HTTP, NodeError};

pub use http::NodeClient;

/// Where the node is and how to print: the options every remote command
/// takes.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The node's HTTP address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP, global = true)]
    pub http: String,
    /// The node's data directory, where its token is.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./mabeam-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Print JSON (for scripts) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands that speak to a running node.
#[derive(Debug, Clone, Subcommand)]
pub enum RemoteCommand {
    /// The node's health: every service of both trees.
    Status {
        /// Where the node is, how to print.
        #[command(flatten)]
        remote: Remote,
    },
    /// List, start, stop and ask agents.
    Agents {
        /// Where the node is, how to print.
        #[command(flatten)]
        remote: Remote,
        /// What to do (`list` by default).
        #[command(subcommand)]
        action: Option<AgentsAction>,
    },
    /// The event log, oldest first; `--follow` waits for new events.
    Events {
        /// Where the node is, how to print.
        #[command(flatten)]
        remote: Remote,
        /// Only events after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep printing events as they are appended (Ctrl-C to stop).
        #[arg(long)]
        follow: bool,
    },
    /// Operate the node's services.
    Services {
        /// Where the node is, how to print.
        #[command(flatten)]
        remote: Remote,
        /// What to do.
        #[command(subcommand)]
        action: ServicesAction,
    },
}

/// What `mabeam agents` does (`list` by default).
#[derive(Debug, Clone, Subcommand)]
pub enum AgentsAction {
    /// The agents, in id order.
    List {
        /// Only agents of this kind.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Start an agent of a kind the node knows (`counter`, `worker`).
    Start {
        /// The kind.
        kind: String,
        /// Its id (the node picks one if absent).
        #[arg(long)]
        id: Option<String>,
        /// Its arguments, as JSON.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
    },
    /// Stop an agent and forget it.
    Stop {
        /// The agent's id.
        id: String,
    },
    /// Send an agent a protocol envelope and print its answer.
    Ask {
        /// The agent's id.
        id: String,
        /// The protocol (e.g. `counter.get`).
        protocol: String,
        /// The envelope's body, as JSON.
        #[arg(long, value_name = "JSON")]
        body: Option<String>,
    },
}

/// What `mabeam services` does.
#[derive(Debug, Clone, Subcommand)]
pub enum ServicesAction {
    /// Restart a service of either tree.
    Restart {
        /// The service (e.g. `rate_limiter`).
        name: String,
    },
}

/// Runs `command` against the node it names; prints to stdout.
pub async fn execute(command: RemoteCommand) -> Result<(), NodeError> {
    match command {
        RemoteCommand::Status { remote } => {
            let client = NodeClient::new(&remote)?;
            // 503 answers the same report, with unhealthy services.
            let health = client.get_json("/health", &[200, 503]).await?;
            if remote.json {
                return print_json(&health);
            }
            let healthy = health["healthy"].as_bool().unwrap_or(false);
            println!(
                "node {}: {}",
                remote.http,
                if healthy { "healthy" } else { "NOT healthy" }
            );
            let rows = rows(&health["services"], &["tree", "service", "health"]);
            table::print(&["TREE", "SERVICE", "HEALTH"], &rows);
            Ok(())
        }
        RemoteCommand::Agents { remote, action } => {
            let client = NodeClient::new(&remote)?;
            match action.unwrap_or(AgentsAction::List { kind: None }) {
                AgentsAction::List { kind } => {
                    let path = match kind {
                        Some(kind) => format!("/api/agents?limit=1000&kind={kind}"),
                        None => "/api/agents?limit=1000".to_owned(),
                    };
                    let page = client.get_json(&path, &[200]).await?;
                    if remote.json {
                        return print_json(&page);
                    }
                    let rows = rows(&page["agents"], &["id", "kind", "status", "restarts"]);
                    table::print(&["ID", "KIND", "STATUS", "RESTARTS"], &rows);
                    println!("{} agent(s)", page["total"].as_u64().unwrap_or(0));
                    Ok(())
                }
                AgentsAction::Start { kind, id, args } => {
                    let mut body = json!({ "kind": kind });
                    if let Some(id) = id {
                        body["id"] = json!(id);
                    }
                    if let Some(args) = args {
                        body["args"] = parse_json("--args", &args)?;
                    }
                    let reply = client.send_json("POST", "/api/agents", Some(&body)).await?;
                    done(&remote, &reply, || {
                        format!("started {}", reply["id"].as_str().unwrap_or("?"))
                    })
                }
                AgentsAction::Stop { id } => {
                    let reply = client
                        .send_json("DELETE", &format!("/api/agents/{id}"), None)
                        .await?;
                    done(&remote, &reply, || format!("stopped {id}"))
                }
                AgentsAction::Ask { id, protocol, body } => {
                    let body = match body {
                        Some(text) => parse_json("--body", &text)?,
                        None => Value::Null,
                    };
                    let envelope = json!({ "protocol": protocol, "body": body });
                    let reply = client
                        .send_json("POST", &format!("/api/agents/{id}/ask"), Some(&envelope))
                        .await?;
                    done(&remote, &reply, || reply.to_string())
                }
            }
        }
        RemoteCommand::Events {
            remote,
            after,
            follow,
        } => {
            let client = NodeClient::new(&remote)?;
            let mut after = after;
            loop {
                // Following waits at the node for the next event.
                let wait = if follow { "&wait_ms=10000" } else { "" };
                let page = client
                    .get_json(&format!("/api/events?after={after}{wait}"), &[200])
                    .await?;
                let events = page["events"].as_array().cloned().unwrap_or_default();
                for event in &events {
                    if remote.json {
                        println!("{event}");
                    } else {
                        // A stored event's fields sit beside its id, or
                        // under `event` (either shape reads).
                        let e = if event["event"].is_object() {
                            &event["event"]
                        } else {
                            event
                        };
                        println!(
                            "{:>6}  {:<24} {:<24} {}",
                            event["id"],
                            e["stream"].as_str().unwrap_or("?"),
                            e["kind"].as_str().unwrap_or("?"),
                            e["data"]
                        );
                    }
                }
                after = page["next"].as_u64().unwrap_or(after);
                if !follow {
                    return Ok(());
                }
            }
        }
        RemoteCommand::Services { remote, action } => {
            let client = NodeClient::new(&remote)?;
            let ServicesAction::Restart { name } = action;
            let reply = client
                .send_json("POST", &format!("/api/services/{name}/restart"), None)
                .await?;
            done(&remote, &reply, || format!("restarted {name}"))
        }
    }
}

/// Prints `reply` as JSON, or `text()` for people.
fn done(remote: &Remote, reply: &Value, text: impl FnOnce() -> String) -> Result<(), NodeError> {
    if remote.json {
        print_json(reply)
    } else {
        println!("{}", text());
        Ok(())
    }
}

fn print_json(value: &Value) -> Result<(), NodeError> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
    Ok(())
}

fn parse_json(flag: &str, text: &str) -> Result<Value, NodeError> {
    serde_json::from_str(text).map_err(|e| NodeError::Request {
        addr: String::new(),
        message: format!("{flag} is not JSON ({e}): quote it, e.g. {flag} '{{\"start\": 1}}'"),
    })
}

/// The `keys` of each object of the array `list`, as table cells.
fn rows(list: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            keys.iter()
                .map(|k| match &item[*k] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}
