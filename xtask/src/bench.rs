//! `cargo xtask bench`: the network benchmark (`lb-bench`: namespaces, nginx, curl, h2load;
//! direct vs HAProxy and nginx stream vs the daemon's modes), or `cargo xtask bench micro`:
//! the criterion benchmarks of lb-core. Performance targets live here, never in tests.
use anyhow::{bail, Context, Result};

use crate::{
    build::{self, build},
    cmd::{command, run},
    packages,
    run::nix_is_root,
};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Options {
    #[command(subcommand)]
    pub micro: Option<Micro>,
    /// Passed to lb-bench, e.g. `--quick`, `--modes direct,splice`, `--workloads bulk-h1`
    /// (`cargo xtask bench -- --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(clap::Subcommand)]
pub enum Micro {
    /// The criterion benchmarks of lb-core (no root needed).
    Micro {
        /// Passed to criterion, e.g. a benchmark name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// The client, server and peer load-balancer programs the network benchmark runs, by Debian
/// package.
const TOOLS: &[(&str, &str)] = &[("ip", "iproute2"), ("curl", "curl"), ("nginx", "nginx"), ("h2load", "nghttp2-client"), ("haproxy", "haproxy")];

/// The package of nginx's stream module where nginx builds it as a dynamic module (Debian).
const NGINX_STREAM_PACKAGE: &str = "libnginx-mod-stream";

pub fn bench(opts: &Options) -> Result<()> {
    if let Some(Micro::Micro { args }) = &opts.micro {
        // The benchmarked code (the ClientHello reader) is pure: no daemon build needed.
        return run(command("cargo").args(["bench", "--package", "lb-core", "--"]).args(args));
    }
    // `--report FILE` only reads a saved run: no root, no tools.
    let report_only = opts.args.iter().any(|a| a == "--report" || a.starts_with("--report="));
    if !report_only {
        if !nix_is_root() {
            bail!("the network benchmark creates namespaces and attaches XDP: run as root (or `cargo xtask bench micro`)");
        }
        packages::ensure(TOOLS)?;
        ensure_nginx_stream()?;
    }
    let built = build(&build::Options { release: true })?;
    let mut cmd = command(built.bin("lb-bench").to_str().unwrap_or("lb-bench"));
    // Run from the workspace root: results go to its target/bench/.
    cmd.args(&opts.args);
    built.apply_env(&mut cmd);
    run(&mut cmd)
}

/// nginx's stream module, for the `nginx-stream` mode: nothing to do when nginx has it built
/// in (`--with-stream`); when nginx builds it as a dynamic module (`--with-stream=dynamic`, as
/// Debian does), its package is installed unless its shared object is already there (lb-bench
/// finds it the same way and loads it with `load_module`).
fn ensure_nginx_stream() -> Result<()> {
    let nginx = packages::find("nginx").context("nginx is not installed")?;
    let out = command(nginx.to_str().unwrap_or("nginx")).arg("-V").output().context("nginx -V")?;
    // nginx -V prints on stderr.
    let text = String::from_utf8_lossy(&out.stderr);
    let configure: Vec<&str> = text.lines().find_map(|l| l.strip_prefix("configure arguments:")).unwrap_or("").split_whitespace().collect();
    if configure.contains(&"--with-stream") {
        return Ok(());
    }
    if !configure.contains(&"--with-stream=dynamic") {
        bail!("{} has no stream module (the nginx-stream mode needs one): {text}", nginx.display());
    }
    let installed = packages::files_of(NGINX_STREAM_PACKAGE).iter().any(|p| p.ends_with("ngx_stream_module.so") && p.is_file());
    if installed {
        return Ok(());
    }
    packages::update()?;
    match packages::candidate(NGINX_STREAM_PACKAGE)? {
        Some(_) => packages::install(&[NGINX_STREAM_PACKAGE]),
        None => bail!("{} builds its stream module as a dynamic module and apt has no {NGINX_STREAM_PACKAGE} to install", nginx.display()),
    }
}
