//! `cargo xtask bench`: the load balancer against the limit, with real TLS servers (nginx) and
//! real clients (curl, h2load) in network namespaces of its own (`lbb<pid>x<n>-*`, removed at
//! the end, even on failure or Ctrl-C). See `lb_tests::bench` for what is measured and how.
//! Binaries: `LB_USER_BIN` (default: next to this binary). Needs root, `nginx`, `h2load`
//! (Debian: nghttp2-client) and `curl`; `cargo xtask bench` installs them when missing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lb_tests::bench::workloads::{Run, WORKLOADS};
use lb_tests::bench::{interrupt, nginx::Nginx, report, usage, Mode, Record, Sizes};
use lb_tests::netns::run_in;
use lb_tests::{is_root, Certs, Topology};

#[derive(Parser)]
#[command(about = "Network benchmark: direct vs the load balancer's copy, splice and xdp modes")]
struct Args {
    /// Small sizes: a run of about a minute, to check the setup rather than to measure.
    #[arg(long)]
    quick: bool,
    /// Modes to run, in order (direct is the reference of every ratio).
    #[arg(long, value_delimiter = ',', default_value = "direct,copy,splice,xdp")]
    modes: Vec<Mode>,
    /// Workloads to run in each mode.
    #[arg(long, value_delimiter = ',', default_values_t = WORKLOADS.map(String::from))]
    workloads: Vec<String>,
    /// `--xdp-mode` of the daemon (auto tries native XDP first).
    #[arg(long, default_value = "auto")]
    xdp_mode: String,
    /// Size of the bulk file in MiB (default 256, 64 with --quick).
    #[arg(long)]
    big_mib: Option<u64>,
    #[arg(long)]
    bulk_downloads: Option<usize>,
    #[arg(long)]
    conns: Option<usize>,
    #[arg(long)]
    conns_clients: Option<usize>,
    #[arg(long)]
    latency_samples: Option<usize>,
    #[arg(long)]
    memory_conns: Option<usize>,
    /// nginx worker processes.
    #[arg(long, default_value_t = 2)]
    nginx_workers: usize,
    /// Rounds: each runs every mode (in an order rotated by one per round, so that no mode is
    /// always first); the table shows medians. Default 2, 1 with --quick.
    #[arg(long)]
    rounds: Option<u32>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !is_root() {
        eprintln!("lb-bench needs root (network namespaces, XDP)");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lb-bench FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns whether every mode ran; the results of those that did are reported either way.
fn run(args: &Args) -> Result<bool> {
    interrupt::install()?;
    raise_fd_limit()?;
    for tool in ["nginx", "h2load", "curl"] {
        if which(tool).is_none() {
            bail!("`{tool}` not found: `cargo xtask bench` installs it (Debian: nginx, nghttp2-client, curl)");
        }
    }
    let sizes = sizes(args);
    let big_len = args.big_mib.unwrap_or(if args.quick { 64 } else { 256 }) << 20;
    let started_utc = report::utc_stamp();
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 2 }).max(1);

    let topo = Topology::with_kind("lbb")?;
    // `direct` routes the client to nginx through the lb namespace, as a router would.
    run_in(
        topo.lb(),
        &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
    )
    .context("enabling forwarding")?;
    let certs = Certs::generate()?;
    eprintln!(
        "lb-bench: namespaces {}-*, {} MiB bulk file, {rounds} round(s), {sizes:?}",
        topo.prefix(),
        big_len >> 20
    );
    let nginx = Nginx::start(topo.srv(), &certs, big_len, args.nginx_workers)?;

    let mut records: Vec<Record> = Vec::new();
    let mut all_ran = true;
    for round in 0..rounds {
        for i in 0..args.modes.len() {
            let mode = args.modes[(i + round as usize) % args.modes.len()];
            interrupt::check()?;
            let busy = usage::wait_quiet(Duration::from_secs(10))?;
            if busy >= usage::QUIET {
                eprintln!(
                    "lb-bench: the host is still {:.0}% busy after 10 s (other work on this machine?); measuring {mode} anyway",
                    busy * 100.0
                );
            }
            let ctx = Ctx {
                args,
                sizes,
                topo: &topo,
                certs: &certs,
                nginx: &nginx,
                started_utc: &started_utc,
            };
            if let Err(e) = run_mode(&ctx, mode, round, busy, &mut records) {
                if interrupt::requested() {
                    return Err(e);
                }
                all_ran = false;
                eprintln!(
                    "lb-bench: mode {mode} FAILED: {e:#}\n--- nginx error log ---\n{}",
                    nginx.error_log_tail()
                );
            }
        }
    }

    let modes: Vec<String> = args.modes.iter().map(|m| m.name().to_string()).collect();
    println!("\n{}", report::table(&records, &modes));
    println!("{}", report::targets(&records, &modes));
    let disturbed = records
        .iter()
        .filter(|r| r.host_busy_before >= usage::QUIET)
        .count();
    if disturbed > 0 {
        println!(
            "CAUTION: {disturbed} of {} results started while the host was busy with other work (see host_busy_before)",
            records.len()
        );
    }
    let path = report::write_json(&args.out_dir, &started_utc, &records)?;
    println!(
        "results: {} (a JSON array, one object per mode and workload)",
        path.display()
    );
    Ok(all_ran)
}

/// What every mode of a run shares.
struct Ctx<'a> {
    args: &'a Args,
    sizes: Sizes,
    topo: &'a Topology,
    certs: &'a Certs,
    nginx: &'a Nginx,
    started_utc: &'a str,
}

fn run_mode(
    ctx: &Ctx,
    mode: Mode,
    round: u32,
    host_busy_before: f64,
    records: &mut Vec<Record>,
) -> Result<()> {
    let daemon = mode.start_lb(ctx.topo, &ctx.args.xdp_mode)?;
    let run = Run {
        topo: ctx.topo,
        certs: ctx.certs,
        nginx: ctx.nginx,
        sizes: ctx.sizes,
        mode,
        daemon: daemon.as_ref(),
        xdp_mode: ctx.args.xdp_mode.clone(),
        started_utc: ctx.started_utc.to_string(),
        round,
        host_busy_before,
    };
    let result = (|| {
        run.check_path()?;
        for workload in &ctx.args.workloads {
            let record = run.workload(workload)?;
            eprintln!(
                "lb-bench: round {round} {mode:<6} {workload:<8} {}",
                summary(&record)
            );
            records.push(record);
        }
        Ok(())
    })();
    if let (Err(_), Some(d)) = (&result, &daemon) {
        eprintln!(
            "--- lb-user log ---\n{}\n--- end of lb-user log ---",
            d.log_excerpt()
        );
    }
    result
}

fn summary(r: &Record) -> String {
    let mut parts = Vec::new();
    let mut add = |name: &str, v: Option<f64>| {
        if let Some(v) = v {
            parts.push(format!("{name} {v:.3}"));
        }
    };
    add("Gbit/s", r.gbit_s);
    add("conns/s", r.conns_s);
    add("p99 ms", r.p99_ms);
    add("LB CPU s/GB", r.lb_cpu_s_per_gb);
    add("LB CPU s/1k conns", r.lb_cpu_s_per_1k_conns);
    add("bytes/conn", r.mem_bytes_per_conn);
    add("fds/conn", r.lb_fds_per_conn);
    if r.failures > 0 {
        parts.push(format!("{} FAILED", r.failures));
    }
    if let Some(b) = r.xdp_spliced_bytes.filter(|b| *b > 0) {
        parts.push(format!("XDP hand-off moved {b} bytes"));
    }
    if let Some(note) = &r.note {
        parts.push(format!("({note})"));
    }
    parts.join(", ")
}

fn sizes(args: &Args) -> Sizes {
    let base = if args.quick {
        Sizes::QUICK
    } else {
        Sizes::DEFAULT
    };
    Sizes {
        bulk_downloads: args.bulk_downloads.unwrap_or(base.bulk_downloads),
        conns: args.conns.unwrap_or(base.conns),
        conns_clients: args.conns_clients.unwrap_or(base.conns_clients),
        latency_samples: args.latency_samples.unwrap_or(base.latency_samples),
        memory_conns: args.memory_conns.unwrap_or(base.memory_conns),
    }
}

/// Idle connections need two descriptors each in the client and in the daemon (six with
/// splice); the soft limit (often 1024) is raised to the hard one, inherited by children.
fn raise_fd_limit() -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}
