//! The command line: a thin clap layer over the library. Exit codes: 0 ok, 1 a check
//! failed, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, DEFAULT_TOML_PATH};
use crate::link::LinkSnapshot;
use crate::plan::plan;

#[derive(Parser)]
#[command(
    name = "offloadd",
    version,
    about = "Flow offload daemon for Linux routers: maintains an nftables flowtable and reports which flows are offloaded"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace; or tracing directives).
    #[arg(long, global = true, env = "OFFLOADD_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: build table inet offloadd and keep it right (SIGHUP reloads, SIGTERM removes it).
    Run {
        /// TOML config file.
        #[arg(long, short, default_value = DEFAULT_TOML_PATH)]
        config: PathBuf,
    },
    /// Print the ruleset offloadd would apply, in nft syntax (no root needed).
    Plan {
        /// TOML config file.
        #[arg(long, short, default_value = DEFAULT_TOML_PATH)]
        config: PathBuf,
        /// Print JSON instead of nft syntax.
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::Plan { config, json } => print_plan(config, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("offloadd: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // journald and logd stamp lines themselves.
    if std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("PROCD").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.init();
    }
}

fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::daemon::run(crate::daemon::RunOptions { config }))?;
    Ok(ExitCode::SUCCESS)
}

fn print_plan(path: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = config::load_toml(&path)?;
    let links = LinkSnapshot::current()?;
    let desired =
        plan(&cfg, &links).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), e.line()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&desired)?);
        return Ok(ExitCode::SUCCESS);
    }
    for dev in &desired.missing {
        println!("# {dev}: device does not exist now; it is left out and added when it appears");
    }
    if cfg.offload.hardware == config::Hardware::Auto {
        println!("# hardware = \"auto\": if a device refuses \"flags offload\", the flowtable is built without it");
    }
    print!("{desired}");
    Ok(ExitCode::SUCCESS)
}
