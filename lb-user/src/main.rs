mod serve;

use std::{io::Write, path::PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use lb_user::{control::config_file, daemon::logging, daemon::runtime, dataplane::snapshot::Snapshot};

/// TLS-aware L4 load balancer: routes TCP connections by their TLS ClientHello (ALPN, SNI)
/// and source address without terminating TLS.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the load balancer.
    Serve(Box<serve::ServeArgs>),
    /// Validate a configuration file and exit.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print which server of a farm each client address would get, one `address server-id`
    /// per line (health not considered: every server up). The choice depends only on the
    /// configuration, so two nodes given the same configuration answer the same.
    Pick {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        farm: u32,
        /// Client addresses: the first COUNT addresses of this CIDR.
        #[arg(long)]
        clients: ipnet::IpNet,
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Print the tc programs attached to an interface's ingress (tcx), as JSON: what serves
    /// its traffic right now, whichever process attached it.
    Hooks {
        #[arg(long)]
        iface: String,
    },
    /// Print a running daemon's XDP counters, pinned and handed-off flows and hand-off
    /// statistics as JSON.
    Stats {
        #[arg(long, default_value = "/var/lib/lb-user")]
        data_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    if let Some(written) = lb_cli_docs::generate_if_asked::<Cli>() {
        return print_written(written?);
    }
    let cli = Cli::parse();
    logging::init(match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => logging::LogFormat::Text,
    });
    match cli.command {
        Command::Serve(args) => {
            raise_file_limit();
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.enable_all();
            if let Some(threads) = args.worker_threads {
                runtime.worker_threads(threads.get());
            }
            runtime.build()?.block_on(serve::run(*args))
        }
        Command::Check { config } => {
            let config = config_file::load(&config)?;
            lb_core::validate::validate(&config)?;
            println!("configuration is valid");
            Ok(())
        }
        Command::Pick { config, farm, clients, count } => {
            let snapshot = Snapshot::compile(&config_file::load(&config)?)?;
            let farm = snapshot.farms.get(&farm).ok_or_else(|| anyhow::anyhow!("farm {farm} is not in {}", config.display()))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for client in clients.hosts().take(count as usize) {
                match farm.pick(client, &[]) {
                    Some(server) => writeln!(out, "{client} {}", server.id)?,
                    None => writeln!(out, "{client} none")?,
                }
            }
            Ok(())
        }
        Command::Hooks { iface } => {
            let (_, programs) = aya::programs::SchedClassifier::query_tcx(&iface, aya::programs::TcAttachType::Ingress)
                .map_err(|e| anyhow::anyhow!("querying the tc programs of {iface}: {e}"))?;
            let names: Vec<String> = programs.iter().map(|p| p.name_as_str().unwrap_or("?").to_string()).collect();
            println!("{}", serde_json::json!({"iface": iface, "tc_ingress": names}));
            Ok(())
        }
        Command::Stats { data_dir } => {
            let info = runtime::read(&data_dir)?;
            let ids = info.kernel.ok_or_else(|| anyhow::anyhow!("the daemon runs without XDP (no --iface): no counters"))?;
            let mut report = lb_user::kernel::kernel_stats::read(&ids, &info.xdp)?;
            report.handoff = lb_user::dataplane::handoff::stats::read(&data_dir);
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

/// The files `generate` wrote, one per line (packaging reads nothing else from it).
fn print_written(files: Vec<PathBuf>) -> Result<()> {
    for file in files {
        println!("{}", file.display());
    }
    Ok(())
}

/// Each proxied connection holds two sockets and, on the splice path, two pipes: the
/// default soft limit of 1,024 descriptors would cap the daemon near 170 connections.
fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
            }
        }
    }
}
