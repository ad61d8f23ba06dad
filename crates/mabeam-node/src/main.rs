//! The `mabeam` binary: `mabeam run` starts a node, `mabeam tree` prints a
//! running node's supervision tree. See the `mabeam_node` crate docs.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand};
use mabeam_node::{DEFAULT_HTTP, LogFormat, NodeConfig, NodeError, cli, client};
use mabeam_supervision_core::ErrorCode;

/// mimalloc, as the benchmarks measure (see xtask's bench binary): faster
/// actor starts than glibc's allocator, without transparent huge pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A mabeam node: OTP-style supervision trees (Foundation and MABEAM) with
/// an HTTP API for health, metrics and the live tree.
#[derive(Debug, Parser)]
#[command(name = "mabeam", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a node: both trees, then the HTTP API; Ctrl-C or SIGTERM stops
    /// everything in reverse start order and exits 0.
    Run {
        /// A TOML config file (every key optional; see the docs of
        /// mabeam_node::NodeConfig). Flags override it.
        #[arg(long, value_name = "FILE.toml")]
        config: Option<PathBuf>,
        /// Where the node keeps its files (created if missing) [default: ./mabeam-data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The HTTP address [default: 127.0.0.1:4000]; port 0 picks a free one.
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Allow an HTTP address that is not loopback.
        #[arg(long)]
        allow_non_loopback: bool,
        /// Log lines for people (text: time, level, message, fields) or
        /// machines (json) [default: text]; the level is the config's
        /// `log`, or RUST_LOG when set.
        #[arg(long, value_name = "FORMAT")]
        log: Option<LogFormat>,
        /// Keep the event store on PostgreSQL at this URL
        /// (`postgres://user:password@host:port/db`) instead of SQLite in
        /// the data directory; overrides the config's `[store] url`.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// This node's name in its cluster (`cluster.node`) [default: mabeam@localhost].
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// The cluster address: node connections (TCP) and gossip (UDP)
        /// (`cluster.listen`) [default: 127.0.0.1:0].
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Another node's cluster address to join through (`cluster.seeds`;
        /// repeatable). More than one node needs a shared store.
        #[arg(long, value_name = "ADDR")]
        join: Vec<SocketAddr>,
    },
    /// Print the live supervision tree of a running node (over its HTTP API).
    Tree {
        /// The node's HTTP address.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP)]
        http: String,
        /// Print the raw JSON instead.
        #[arg(long)]
        json: bool,
        /// The node's data directory, whose token the request carries
        /// (`/api/*` reads need it unless the node has
        /// `http.public_reads`).
        #[arg(long, value_name = "DIR", default_value = mabeam_node::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// The commands that speak to a running node (see mabeam_node::cli).
    #[command(flatten)]
    Remote(cli::RemoteCommand),
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            data_dir,
            http,
            allow_non_loopback,
            log,
            store,
            node,
            listen,
            join,
        } => {
            // Every file the node makes is its user's alone (the data
            // directory 0700, its files 0600), whoever makes it.
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
            let cluster = ClusterFlags { node, listen, join };
            let mut config = match load(config, data_dir, http, allow_non_loopback, cluster) {
                Ok(config) => config,
                Err(error) => return fail(&error),
            };
            if let Some(format) = log {
                config.log_format = format;
            }
            if let Some(url) = store {
                let postgres = match config.store.take() {
                    Some(mut postgres) => {
                        postgres.url = url;
                        postgres
                    }
                    None => mabeam_foundation_services::PostgresConfig::new(url),
                };
                if let Err(message) = postgres.validate() {
                    eprintln!("mabeam: --store: {message}");
                    return ExitCode::FAILURE;
                }
                config.store = Some(postgres);
            }
            if let Err(error) = mabeam_node::logging::init(config.log, config.log_format) {
                return fail(&error);
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("mabeam: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(mabeam_node::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
        Command::Tree {
            http,
            json,
            data_dir,
        } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("mabeam: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            // No token file: the node may serve reads publicly.
            let token = std::fs::read_to_string(data_dir.join(mabeam_node::data_dir::TOKEN_FILE))
                .ok()
                .map(|token| token.trim().to_owned());
            match runtime.block_on(tree(&http, json, token.as_deref())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
        Command::Remote(command) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("mabeam: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(cli::execute(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
        Command::Completions { shell } => {
            // Into a buffer first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mabeam", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
    }
}

/// `--node`, `--listen`, `--join`: they override `[cluster]`.
struct ClusterFlags {
    node: Option<String>,
    listen: Option<SocketAddr>,
    join: Vec<SocketAddr>,
}

fn load(
    file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    http: Option<SocketAddr>,
    allow_non_loopback: bool,
    cluster: ClusterFlags,
) -> Result<NodeConfig, NodeError> {
    let mut config = match file {
        Some(path) => NodeConfig::from_file(&path)?,
        None => NodeConfig::default(),
    };
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if let Some(addr) = http {
        config.http = addr;
    }
    config.allow_non_loopback |= allow_non_loopback;
    if let Some(node) = cluster.node {
        config.cluster_node = node;
    }
    if let Some(listen) = cluster.listen {
        config.cluster_listen = listen;
    }
    if !cluster.join.is_empty() {
        config.cluster_seeds = cluster.join;
    }
    config.check()?;
    Ok(config)
}

fn fail(error: &NodeError) -> ExitCode {
    eprintln!("mabeam: error {}: {error}", error.code());
    ExitCode::from(error.exit_code() as u8)
}

async fn tree(addr: &str, json: bool, token: Option<&str>) -> Result<(), NodeError> {
    let reply = client::request(addr, "GET", "/api/tree", token).await?;
    if reply.status == 401 {
        return Err(NodeError::Request {
            addr: addr.to_owned(),
            message: "the node wants its token: pass --data-dir DIR, the node's data directory"
                .to_owned(),
        });
    }
    if reply.status != 200 {
        return Err(NodeError::Request {
            addr: addr.to_owned(),
            message: format!("status {}: {}", reply.status, reply.body),
        });
    }
    let tree: serde_json::Value =
        serde_json::from_str(&reply.body).map_err(|e| NodeError::Request {
            addr: addr.to_owned(),
            message: e.to_string(),
        })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&tree).unwrap_or_default()
        );
        return Ok(());
    }
    println!("namespace {}", tree["namespace"].as_str().unwrap_or("?"));
    for app in tree["applications"].as_array().into_iter().flatten() {
        print_node(app, 0);
    }
    for service in tree["absent"].as_array().into_iter().flatten() {
        println!(
            "absent: {} ({})",
            service["name"].as_str().unwrap_or("?"),
            service["absent_because"].as_str().unwrap_or("not built")
        );
    }
    Ok(())
}

fn print_node(node: &serde_json::Value, depth: usize) {
    let mut line = format!(
        "{}{} [{}] {}",
        "  ".repeat(depth),
        node["name"].as_str().unwrap_or("?"),
        node["kind"].as_str().unwrap_or("?"),
        node["status"].as_str().unwrap_or("?"),
    );
    if let Some(restarts) = node["restarts"].as_u64().filter(|r| *r > 0) {
        line.push_str(&format!(" restarts={restarts}"));
    }
    if let (Some(active), Some(specs)) = (node["active"].as_u64(), node["specs"].as_u64()) {
        line.push_str(&format!(" children={active}/{specs}"));
    }
    if let Some(len) = node["mailbox_len"].as_u64() {
        line.push_str(&format!(" mailbox={len}"));
    }
    println!("{line}");
    for child in node["children"].as_array().into_iter().flatten() {
        print_node(child, depth + 1);
    }
}
