//! lbctl: a command-line client of the IPLB-style TCP API that the daemon serves under
//! `/ipLoadbalancing/{serviceName}`.
//!
//! The flow reads top to bottom: `cli` parses arguments; `plan` turns them into the HTTP
//! request(s) to make, as a pure function; `exec` carries a plan out over a `client::Transport`
//! (following lists, polling refresh tasks); `render` turns replies into tables or JSON.
//! Exit codes: 0 success, 1 any error (API, connection, failed or timed-out task), 2 usage.
//!
//! A crate of its own so that building the CLI builds neither the daemon nor its eBPF
//! programs: it depends on `lb-core`'s model and an HTTP client only.
mod cli;
mod client;
mod error;
mod exec;
mod fields;
mod plan;
mod render;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use cli::Cli;
use error::Error;
use plan::Plan;

fn main() -> ExitCode {
    match lb_cli_docs::generate_if_asked::<Cli>() {
        Some(Ok(files)) => {
            print(&files.iter().map(|f| format!("{}\n", f.display())).collect::<String>());
            return ExitCode::SUCCESS;
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        None => {}
    }
    let cli = Cli::parse();
    let plan = match plan::plan(&cli.command) {
        Ok(plan) => plan,
        Err(e) => return fail(&e),
    };
    if let Plan::Completions(shell) = plan {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "lbctl", &mut script);
        print(&String::from_utf8_lossy(&script));
        return ExitCode::SUCCESS;
    }
    let transport = match client::Http::new(&cli.global) {
        Ok(transport) => transport,
        Err(e) => return fail(&e),
    };
    let report = exec::run(&plan, &transport, cli.global.output, &|d: Duration| std::thread::sleep(d));
    match report {
        Ok(report) => {
            print(&report.out);
            match report.failure {
                Some(e) => fail(&e),
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => fail(&e),
    }
}

fn print(out: &str) {
    if out.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`lbctl ... | head`) is not an error worth reporting.
    let _ = stdout.write_all(out.as_bytes());
    if !out.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code())
}
