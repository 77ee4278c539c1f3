//! The command line: a thin clap layer over the library. Exit codes: 0 ok, 1 a check
//! failed, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use self::flows::NOT_RUNNING_NOTE;
use crate::config::{self, Source as ConfigSource};
use crate::conntrack::PathFilter;
use crate::control::{self, ClientError, WatchLine, DEFAULT_SOCKET};
use crate::link::LinkSnapshot;
use crate::plan::{plan, Inputs, Plan};
use crate::report;

mod ask;
pub mod flows;
pub mod top;
pub mod why;
use ask::{flush, print_metrics, print_status, why};

#[derive(Parser)]
#[command(
    name = "offloadd",
    version,
    about = "Flow offload daemon for Linux routers: maintains an nftables flowtable and reports which flows are offloaded"
)]
struct Cli {
    /// Log level: off, error, warn, info, debug or trace.
    #[arg(long, global = true, env = "OFFLOADD_LOG", default_value = "info")]
    log: String,
    /// Control socket of the daemon.
    #[arg(long, global = true, env = "OFFLOADD_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Where the config comes from: UCI when /etc/config/firewall exists (OpenWrt) and no
/// --config is given, else the TOML file.
#[derive(clap::Args)]
struct SourceArgs {
    /// TOML config file [default: /etc/offloadd/offloadd.toml, or UCI on OpenWrt].
    #[arg(long, short, conflicts_with = "uci_dir")]
    config: Option<PathBuf>,
    /// Read UCI (offloadd, firewall, network) from this directory instead of /etc/config.
    #[arg(long, value_name = "DIR")]
    uci_dir: Option<PathBuf>,
}

impl SourceArgs {
    fn source(self) -> ConfigSource {
        ConfigSource::choose(self.config, self.uci_dir)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: build table inet offloadd and keep it right (SIGHUP reloads, SIGTERM removes it).
    Run {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Print the ruleset offloadd would apply, in nft syntax (no root needed).
    Plan {
        #[command(flatten)]
        source: SourceArgs,
        /// Print JSON instead of nft syntax.
        #[arg(long)]
        json: bool,
    },
    /// Check config, kernel support, hardware per device and common mistakes; changes nothing.
    /// Exit 0: no failure; 1: something fails; 2: could not run (not root).
    Check {
        #[command(flatten)]
        source: SourceArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon: mode, devices, hardware, flows by path, time to offload, last apply.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List flows and their path; works without the daemon (direct conntrack dump).
    Flows {
        /// Only flows on this path.
        #[arg(long, value_enum)]
        path: Option<PathFilter>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Stream path changes as they happen (run it during a speed test); Ctrl-C stops.
        #[arg(long)]
        watch: bool,
        /// Without the daemon: how often --watch resyncs.
        #[arg(long, default_value = "2s", value_parser = parse_interval)]
        resync: std::time::Duration,
    },
    /// Prometheus text exposition of the daemon's counts (offloadd_up 0 if it is not running).
    Metrics,
    /// Live view of flows by throughput, per path, refreshed every second (run it during a
    /// speed test). Rates come from conntrack's counters (see [conntrack] accounting).
    Top {
        /// Print one frame (two listings an interval apart) and exit.
        #[arg(long)]
        once: bool,
        /// One JSON object a frame.
        #[arg(long)]
        json: bool,
        /// How many flows to show.
        #[arg(long, default_value_t = 20)]
        lines: usize,
        /// Only flows on this path (offloaded: the daemon's own list, cheap on big tables).
        #[arg(long, value_enum)]
        path: Option<PathFilter>,
        /// Time between frames.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Why a flow is (not) offloaded: each flow to or from ADDR[:PORT], its path, its last
    /// path changes and the reason it is slow. Exit 1 when nothing matches.
    Why {
        /// An address, or address:port ([v6]:port for IPv6): either end, either direction.
        target: crate::view::history::Target,
        /// Print JSON (an array of {"flow", "history"}).
        #[arg(long)]
        json: bool,
    },
    /// Flush the running daemon's flowtable now: offloaded flows take the whole ruleset on
    /// their next packet, then offload again (for keepalived/VRRP notify scripts).
    Flush {
        /// Print the daemon's JSON answer (errors too, as {"error": ...}).
        #[arg(long)]
        json: bool,
    },
}

/// glibc gives each thread that allocates its own malloc arena; the conntrack dump
/// thread allocates the chunks the watcher frees, so memory sat in a second arena and
/// RSS wandered by a MiB in the soak. One arena suits a daemon of three threads that
/// rarely contend. (musl, OpenWrt's libc, has no arenas.)
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt with M_ARENA_MAX (-8) before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s)
}

/// Client commands die quietly when their reader goes away (`offloadd plan | head`), as
/// Unix tools do: Rust ignores SIGPIPE, so without this the first print after the pipe
/// closed panics ("failed printing to stdout: Broken pipe"). The daemon keeps ignoring
/// it: a control client that hangs up must cost it an EPIPE, not its life.
fn die_quietly_on_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        die_quietly_on_sigpipe();
    }
    init_logging(&cli.log);
    let socket = cli.socket;
    let result = match cli.command {
        Command::Run { source } => run(source.source(), socket),
        Command::Plan { source, json } => print_plan(source.source(), json),
        Command::Status { json } => print_status(&socket, json),
        Command::Flows {
            path,
            json,
            watch: false,
            ..
        } => print_flows(&socket, path, json),
        Command::Flows {
            path,
            json,
            watch: true,
            resync,
        } => watch_flows(&socket, path, json, resync),
        Command::Metrics => print_metrics(&socket),
        Command::Flush { json } => flush(&socket, json),
        Command::Why { target, json } => why(&socket, target, json),
        Command::Top {
            once,
            json,
            lines,
            path,
            interval,
        } => self::top::run(
            &socket,
            path,
            self::top::Options {
                once,
                json,
                lines,
                every: interval,
            },
        )
        .map(|_| ExitCode::SUCCESS),
        Command::Check { source, json } => run_check(source.source(), json),
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
    // A level, not per-module directives: the regex engine those need would cost
    // 0.5 MiB of binary and resident memory on a router.
    let level = filter
        .parse::<tracing_subscriber::filter::LevelFilter>()
        .unwrap_or_else(|_| {
            eprintln!("offloadd: log level {filter:?} is not one of off, error, warn, info, debug, trace; using info");
            tracing_subscriber::filter::LevelFilter::INFO
        });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
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

fn run(config: ConfigSource, socket: PathBuf) -> anyhow::Result<ExitCode> {
    let privileges = crate::daemon::drop_privileges();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::daemon::run(crate::daemon::RunOptions {
        config,
        socket,
        privileges,
    }))?;
    Ok(ExitCode::SUCCESS)
}

fn print_plan(source: ConfigSource, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = source.load()?;
    let path = source.exclude_file();
    let mut links = LinkSnapshot::current()?;
    if cfg.offload.hardware != config::Hardware::Off {
        let sysfs = std::path::Path::new(crate::link::SYSFS_NET);
        links.resolve_lowers(&cfg.offload.devices, sysfs);
    }
    // The same inputs the daemon gathers: the devices whose qdiscs matter come from a
    // plan with the links alone; the other forward chains from the live ruleset.
    let candidates = plan(&cfg, &Inputs::links(&links))
        .map_err(|e| anyhow::anyhow!(e.at(&path)))?
        .ruleset
        .shaping_candidates();
    let shaped = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::link::shaped_now(&candidates))
        .unwrap_or_default();
    let (forward, unread) = match crate::nft::Nft::open().and_then(|mut n| n.read()) {
        Ok(actual) => (actual.foreign_forward, None),
        Err(_) => (vec![], Some("the live ruleset could not be read (run as root to see where it goes after the firewall's chains)")),
    };
    let inputs = Inputs {
        links: &links,
        forward: &forward,
        shaped: &shaped,
    };
    let Plan {
        ruleset: desired,
        priority_why,
    } = plan(&cfg, &inputs).map_err(|e| anyhow::anyhow!(e.at(&path)))?;
    let priority_note = unread.map_or(priority_why, str::to_string);
    if json {
        println!("{}", serde_json::to_string_pretty(&desired)?);
        return Ok(ExitCode::SUCCESS);
    }
    if cfg.mode == config::Mode::Observe {
        println!("# mode observe: offloadd creates nothing and only reports; this is what manage would apply");
    }
    for dev in &desired.missing {
        println!("# {dev}: device does not exist now; it is left out and added when it appears");
    }
    for (dev, lower) in &desired.via {
        println!(
            "# {dev}: hardware offload is set up on its lower devices {}",
            lower.join(", ")
        );
    }
    for (dev, what) in &desired.shaped {
        println!("# {dev}: shaped ({what}): it stays on software offload, which keeps the shaping");
    }
    println!(
        "# forward chain priority {}: {priority_note}",
        crate::plan::priority_text(desired.priority)
    );
    if cfg.offload.hardware == config::Hardware::Auto {
        println!("# hardware = \"auto\": if any device refuses \"flags offload\", the flowtable is software over the configured devices");
    }
    print!("{desired}");
    Ok(ExitCode::SUCCESS)
}

fn run_check(source: ConfigSource, json: bool) -> anyhow::Result<ExitCode> {
    let facts = crate::check::gather(&source);
    let found = crate::check::findings(&facts);
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print!("{}", crate::check::text(&found));
    }
    Ok(ExitCode::from(crate::check::exit_code(&facts, &found)))
}

fn print_flows(
    socket: &std::path::Path,
    path: Option<PathFilter>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    // Written as each flow arrives: neither this command nor the daemon holds the list.
    // JSON is one array, one flow a line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut n = 0usize;
    let mut failed = None;
    let note = || eprintln!("{NOT_RUNNING_NOTE}");
    if json {
        out.write_all(b"[")?;
        flows::each_json(socket, path, note, |line| {
            let sep: &[u8] = if n == 0 { b"\n" } else { b",\n" };
            n += 1;
            // A closed pipe (`| head`) ends the listing quietly.
            failed = out
                .write_all(sep)
                .and_then(|_| out.write_all(line.as_bytes()))
                .err();
            failed.is_none()
        })?;
        if failed.is_none() {
            out.write_all(if n == 0 { b"]\n" } else { b"\n]\n" })?;
        }
    } else {
        flows::each(socket, path, note, |f| {
            failed = writeln!(out, "{}", report::flow_line(f)).err();
            failed.is_none()
        })?;
    }
    if failed.is_none() {
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn watch_flows(
    socket: &std::path::Path,
    path: Option<PathFilter>,
    json: bool,
    resync: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let show = |line: WatchLine| {
        let text = match &line {
            WatchLine::Transition(t)
                if !path.is_none_or(|p| p.matches(t.from) || p.matches(t.to)) =>
            {
                return true
            }
            _ if json => serde_json::to_string(&line).unwrap_or_default(),
            WatchLine::Transition(t) => report::transition_line(t),
            WatchLine::Lagged(n) => {
                format!("# {n} transitions were skipped: this terminal read too slowly")
            }
            WatchLine::Error(e) => format!("# daemon: {e}"),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}").and_then(|_| out.flush()).is_ok()
    };
    if let Err(ClientError::NotRunning(_)) = control::get_status(socket) {
        eprintln!("offloadd is not running; watching conntrack directly (Ctrl-C stops)");
    }
    flows::watch(socket, resync, show)?;
    Ok(ExitCode::SUCCESS)
}
