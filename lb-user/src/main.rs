use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use lb_user::{bpf, config_file, runtime, serve, snapshot::Snapshot};

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
    Serve(serve::ServeArgs),
    /// Validate a configuration file and exit.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a running daemon's XDP counters and pinned flows as JSON.
    Stats {
        #[arg(long, default_value = "/var/lib/lb-user")]
        data_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(serve::run(args)),
        Command::Check { config } => {
            let config = config_file::load(&config)?;
            Snapshot::compile(&config)?;
            println!("configuration is valid");
            Ok(())
        }
        Command::Stats { data_dir } => {
            let info = runtime::read(&data_dir)?;
            let ids = info.kernel.ok_or_else(|| anyhow::anyhow!("the daemon runs without XDP (no --iface): no counters"))?;
            println!("{}", serde_json::to_string_pretty(&bpf::read_stats(&ids)?)?);
            Ok(())
        }
    }
}
