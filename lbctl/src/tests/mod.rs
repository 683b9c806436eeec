//! Tests of lbctl without the daemon: arguments → requests (`plan`), replies → output and exit
//! (`exec`, over a scripted transport), table rendering, and the HTTP transport against a
//! one-shot in-process listener.
mod cli;
mod exec;
mod http;
mod plan;
mod render;

use clap::Parser;

use super::cli::Cli;
use super::error::Error;
use super::plan::{Plan, Request};

/// Parses `lbctl <args>`, panicking with clap's message if it does not parse.
fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("lbctl").chain(args.iter().copied())).unwrap_or_else(|e| panic!("lbctl {}: {e}", args.join(" ")))
}

/// Whether clap refuses `lbctl <args>`.
fn refused(args: &[&str]) -> bool {
    Cli::try_parse_from(std::iter::once("lbctl").chain(args.iter().copied())).is_err()
}

fn plan_of(args: &[&str]) -> Result<Plan, Error> {
    super::plan::plan(&cli(args).command)
}

/// The (first) request `lbctl <args>` makes.
fn request_of(args: &[&str]) -> Request {
    match plan_of(args).unwrap_or_else(|e| panic!("lbctl {}: {e}", args.join(" "))) {
        Plan::One { request, .. } | Plan::List { request, .. } | Plan::Refresh { request, .. } => request,
        Plan::Completions(_) => panic!("lbctl {} makes no request", args.join(" ")),
    }
}

/// The usage error `lbctl <args>` ends in.
fn usage_error(args: &[&str]) -> String {
    match plan_of(args) {
        Err(Error::Usage(message)) => message,
        other => panic!("lbctl {}: expected a usage error, got {other:?}", args.join(" ")),
    }
}
