//! The `wasp` command line.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use wasp::server::{self, Overrides};

#[derive(Parser)]
#[command(name = "wasp", version, about = "Thread-per-core API gateway for HTTP and WebSocket microservices")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `serve` and `dev` share: the file and the command-line overrides.
#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Public listener, overrides server.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin listener, overrides server.admin_listen.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Worker threads (0 = one per core), overrides server.workers.
    #[arg(long)]
    workers: Option<usize>,
}

/// Where the admin API is, for the subcommands that talk to it.
#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// The admin listener (or WASP_ADMIN).
    #[arg(long, env = "WASP_ADMIN", default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// Bearer token (or WASP_ADMIN_TOKEN).
    #[arg(long, env = "WASP_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AdminArgs {
    fn client(self) -> Result<wasp::admin::client::AdminClient, String> {
        wasp::admin::client::AdminClient::new(&self.admin, self.token)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (on the built-in default config when --config is absent).
    Serve {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Runs one developer's service behind the gateway: `--override` sends
    /// a service to a local process, `--fallback` sends every other one to
    /// another gateway, `[services.X.mock]` answers for the rest; a line
    /// per request on the console.
    Dev {
        /// SERVICE=HOST:PORT (repeatable; also WASP_OVERRIDE_SERVICE=HOST:PORT).
        #[arg(long = "override", value_name = "SERVICE=HOST:PORT")]
        overrides: Vec<String>,
        /// Another gateway for every service not overridden or mocked: http://HOST:PORT.
        #[arg(long)]
        fallback: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Services' and endpoints' versions, through the admin API.
    Config {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the API's JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: wasp::cli::ConfigCmd,
    },
    /// Consumers (who calls through the gateway), through the admin API.
    Consumers {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the API's JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: wasp::cli::ConsumersCmd,
    },
    /// A consumer's API keys: create, list, revoke, through the admin API.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the API's JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: wasp::cli::KeysCmd,
    },
    /// A service's instances now (static or discovered), through the admin API.
    Instances {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        service: String,
    },
    /// Validate a config file; exits non-zero naming the bad key and line.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { run: RunArgs { config, listen, admin_listen, workers } } => {
            match server::serve(config, Overrides { listen, admin_listen, workers }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wasp: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Dev { overrides, fallback, run: RunArgs { config, listen, admin_listen, workers } } => {
            let dev = wasp::config::dev::DevMode::new(
                &overrides,
                // Variables that are not text are not ours (and must not panic).
                std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
                fallback.as_deref(),
            )
            .and_then(|d| d.install());
            let run = dev
                .map_err(|e| e.to_string())
                .and_then(|()| server::serve(config, Overrides { listen, admin_listen, workers }));
            match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wasp: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Config { admin, json, cmd } => printed(admin.client().and_then(|c| wasp::cli::run(&c, &cmd, json))),
        Command::Consumers { admin, json, cmd } => {
            printed(admin.client().and_then(|c| wasp::cli::consumers(&c, &cmd, json)))
        }
        Command::Keys { admin, json, cmd } => printed(admin.client().and_then(|c| wasp::cli::keys(&c, &cmd, json))),
        Command::Instances { admin, json, service } => {
            printed(admin.client().and_then(|c| wasp::cli::instances(&c, &service, json)))
        }
        Command::Check { config } => match server::load(Some(&config), &Overrides::default()) {
            Ok(c) => {
                println!(
                    "ok: {} ({} services, {} workers)",
                    config.display(),
                    c.gateway.services.len(),
                    c.server.workers
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wasp: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// A CLI command's outcome on the terminal: its text, or the error (exit 1).
fn printed(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasp: {e}");
            ExitCode::from(1)
        }
    }
}
