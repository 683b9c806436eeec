//! `lbctl`: the command-line client of the daemon's HTTP API (SPEC.md, "API conventions").
//! The code lives in `src/lbctl/`, a module tree of this binary only (not of the library).
#[path = "../lbctl/mod.rs"]
mod lbctl;

fn main() -> std::process::ExitCode {
    lbctl::main()
}
