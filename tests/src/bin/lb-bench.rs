//! `cargo xtask bench`: the load balancer against the limit and against the peers a user
//! would pick instead, with real TLS servers (nginx) and real clients (curl, h2load) in
//! network namespaces of its own (`lbb<pid>x<n>-*`, one topology per kind of veth, removed at
//! the end, even on failure or Ctrl-C). See `lb_tests::bench` for what is measured and how.
//! Binaries: `LB_USER_BIN` (default: next to this binary). Needs root, `nginx` (with its
//! stream module), `haproxy`, `h2load` (Debian: nghttp2-client) and `curl`; `cargo xtask
//! bench` installs them when missing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lb_tests::bench::nginx::{Content, Nginx};
use lb_tests::bench::peers::find_tool;
use lb_tests::bench::runner::{failed_setup, Bench};
use lb_tests::bench::table::{table, Setting};
use lb_tests::bench::targets::targets;
use lb_tests::bench::workloads::WORKLOADS;
use lb_tests::bench::{interrupt, report, usage, Mode, Record, Sizes};
use lb_tests::netns::{run_in, VethKind};
use lb_tests::{is_root, Certs, Topology};

/// `lb-bench --help`.
#[derive(Parser)]
#[command(
    about = "Network benchmark: direct vs HAProxy and nginx stream vs the load balancer's copy, \
             splice, xdp and auto modes, on veths with kernel defaults and wire-like veths",
    after_help = "Modes: direct (no load balancer: the lb namespace forwards; the limit), haproxy \
                  (TCP mode, ALPN routing, splice forced both ways), nginx-stream (ssl_preread, \
                  ALPN map), copy, splice, xdp (the frontend's fastpath; xdp hands off right after \
                  the hello), auto (fastpath auto, the default: splice, then the kernel hand-off past \
                  the threshold). xdp and auto attach the daemon to lbc and lbs, copy and splice \
                  to lbc.\n\
                  Veths: default (kernel defaults: tx checksum offload and TSO on, GRO off), wire \
                  (tx checksum off, GRO on); a topology per kind, one after the other.\n\
                  Prints, per veth kind and workload, each mode's median with its ratio to direct \
                  and to haproxy, then the issue's targets (met / MISSED / not measured); writes \
                  every (veth, mode, workload, round) to <out-dir>/<UTC stamp>.json. A mode that \
                  fails is reported FAILED (status \"failed\" in the JSON) and the run goes on; \
                  the exit status is then 1."
)]
struct Args {
    /// Small sizes and one round (about ten minutes on 2 cores for every mode on both kinds
    /// of veth): checks the setup rather than measures.
    #[arg(long)]
    quick: bool,
    /// Modes to run, in order (direct and haproxy are the references of the ratios).
    #[arg(long, value_delimiter = ',', default_value = "direct,haproxy,nginx-stream,copy,splice,xdp,auto")]
    modes: Vec<Mode>,
    /// Kinds of veth to run every mode on, one topology after the other.
    #[arg(long, value_delimiter = ',', default_value = "default,wire")]
    veth: Vec<VethKind>,
    /// Workloads to run in each mode.
    #[arg(long, value_delimiter = ',', default_values_t = WORKLOADS.map(String::from))]
    workloads: Vec<String>,
    /// `--xdp-mode` of the daemon: how XDP attaches where the daemon runs it beside its tc
    /// programs (auto: native first).
    #[arg(long, default_value = "auto")]
    xdp_mode: String,
    /// Size of the bulk file in MiB (default 256, 64 with --quick).
    #[arg(long)]
    big_mib: Option<u64>,
    /// Downloads of the bulk file per bulk workload.
    #[arg(long)]
    bulk_downloads: Option<usize>,
    /// New connections in the `conns` workload.
    #[arg(long)]
    conns: Option<usize>,
    /// h2load clients making the `conns` workload's connections at once.
    #[arg(long)]
    conns_clients: Option<usize>,
    /// Sequential new connections timed in the `latency` workload.
    #[arg(long)]
    latency_samples: Option<usize>,
    /// Idle TLS connections held in the `memory` workload.
    #[arg(long)]
    memory_conns: Option<usize>,
    /// Worker processes of the servers' nginx (the backends, not a load balancer).
    #[arg(long, default_value_t = 2)]
    nginx_workers: usize,
    /// Threads of every load balancer, so that they compare on equal terms: HAProxy's
    /// `nbthread`, nginx stream's `worker_processes` and lb-user's `--worker-threads`.
    #[arg(long = "lb-workers", alias = "peer-workers", default_value_t = 1)]
    lb_workers: usize,
    /// Rounds: each runs every mode (in an order rotated by one per round, so that no mode is
    /// always first); the table shows medians. Default 3, 1 with --quick.
    #[arg(long)]
    rounds: Option<u32>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Runs nothing: prints the table and the targets of a run written before (its JSON
    /// file), as this version computes them. Needs no root.
    #[arg(long, value_name = "JSON")]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.report {
        return match report_of(path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lb-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
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

/// Returns whether every mode ran cleanly; the results are reported either way.
fn run(args: &Args) -> Result<bool> {
    interrupt::install()?;
    raise_fd_limit()?;
    for tool in ["nginx", "h2load", "curl"] {
        find_tool(tool)?;
    }
    let sizes = sizes(args);
    let big_len = args.big_mib.unwrap_or(if args.quick { 64 } else { 256 }) << 20;
    let started_utc = report::utc_stamp();
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let certs = Certs::generate()?;
    let content = Content::write(big_len)?;
    eprintln!(
        "lb-bench: veths {:?}, modes {:?}, {} MiB bulk file, {rounds} round(s), {sizes:?}",
        args.veth.iter().map(|v| v.name()).collect::<Vec<_>>(),
        args.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        big_len >> 20
    );

    let mut records: Vec<Record> = Vec::new();
    let mut all_clean = true;
    for &veth in &args.veth {
        interrupt::check()?;
        let clean = match on_veth(args, veth, &certs, &content, sizes, rounds, &started_utc, &mut records) {
            Ok(clean) => clean,
            Err(e) if !interrupt::requested() => {
                eprintln!("lb-bench: veth {}: FAILED to set up: {e:#}", veth.name());
                for round in 0..rounds {
                    records.extend(failed_setup(
                        veth.name(),
                        &args.modes,
                        &args.workloads,
                        round,
                        &started_utc,
                        &format!("setting up the {} topology: {e:#}", veth.name()),
                    ));
                }
                false
            }
            Err(e) => return Err(e),
        };
        all_clean &= clean;
    }

    let veths: Vec<String> = args.veth.iter().map(|v| v.name().to_string()).collect();
    let modes: Vec<String> = args.modes.iter().map(|m| m.name().to_string()).collect();
    let setting = Setting { rounds, cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), lb_workers: args.lb_workers };
    println!("\n{}", table(&records, &veths, &modes, &args.workloads, setting));
    println!("{}", targets(&records, &veths, &modes));
    let disturbed = records.iter().filter(|r| r.host_busy_before >= usage::QUIET).count();
    if disturbed > 0 {
        println!("CAUTION: {disturbed} of {} results started while the host was busy with other work (see host_busy_before)", records.len());
    }
    let path = report::write_json(&args.out_dir, &started_utc, &records)?;
    println!("results: {} (a JSON array, one object per veth, mode, workload and round)", path.display());
    Ok(all_clean)
}

/// The table and targets of a saved run, with the veths, modes and workloads it has.
fn report_of(path: &std::path::Path) -> Result<()> {
    let records = report::read_json(path)?;
    let veths = report::distinct(&records, |r| &r.veth);
    let modes = report::distinct(&records, |r| &r.mode);
    let workloads = report::distinct(&records, |r| &r.workload);
    let rounds = records.iter().map(|r| r.round + 1).max().context("the file holds no result")?;
    let lb_workers = records.iter().find_map(|r| r.lb_workers).unwrap_or(1);
    let setting = Setting { rounds, cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), lb_workers };
    println!("{} ({} results)\n", path.display(), records.len());
    println!("{}", table(&records, &veths, &modes, &workloads, setting));
    println!("{}", targets(&records, &veths, &modes));
    Ok(())
}

/// Every round of every mode on a topology of veths of `veth`, torn down at the end.
#[allow(clippy::too_many_arguments)]
fn on_veth(
    args: &Args,
    veth: VethKind,
    certs: &Certs,
    content: &Content,
    sizes: Sizes,
    rounds: u32,
    started_utc: &str,
    records: &mut Vec<Record>,
) -> Result<bool> {
    let topo = Topology::with_kind("lbb", veth)?;
    // `direct` routes the client to nginx through the lb namespace, as a router would (and
    // the hand-off's FIB lookups need forwarding on).
    run_in(topo.lb(), &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]).context("enabling forwarding")?;
    eprintln!("lb-bench: veth {}: namespaces {}-*", veth.name(), topo.prefix());
    let nginx = Nginx::start(topo.srv(), certs, content, args.nginx_workers)?;
    let bench =
        Bench { topo: &topo, certs, nginx: &nginx, sizes, workloads: &args.workloads, xdp_mode: &args.xdp_mode, lb_workers: args.lb_workers, started_utc };
    let mut clean = true;
    for round in 0..rounds {
        for i in 0..args.modes.len() {
            let mode = args.modes[(i + round as usize) % args.modes.len()];
            interrupt::check()?;
            let busy = usage::wait_quiet(Duration::from_secs(10))?;
            if busy >= usage::QUIET {
                eprintln!("lb-bench: the host is still {:.0}% busy after 10 s (other work on this machine?); measuring {mode} anyway", busy * 100.0);
            }
            clean &= bench.run_mode(mode, round, busy, records)?;
        }
    }
    Ok(clean)
}

fn sizes(args: &Args) -> Sizes {
    let base = if args.quick { Sizes::QUICK } else { Sizes::DEFAULT };
    Sizes {
        bulk_downloads: args.bulk_downloads.unwrap_or(base.bulk_downloads),
        conns: args.conns.unwrap_or(base.conns),
        conns_clients: args.conns_clients.unwrap_or(base.conns_clients),
        latency_samples: args.latency_samples.unwrap_or(base.latency_samples),
        memory_conns: args.memory_conns.unwrap_or(base.memory_conns),
    }
}

/// Idle connections need two descriptors each in the client and in the load balancer (six
/// with splice); the soft limit (often 1024) is raised to the hard one, inherited by children.
fn raise_fd_limit() -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;
    Ok(())
}
