//! Man pages (clap_mangen) and shell completions (clap_complete) generated from a binary's own
//! clap definitions, so they can never drift from its flags.
//!
//! Both binaries accept a `generate man|completions --out DIR` subcommand that packaging runs
//! (`cargo xtask package`). It is added to the command tree only when the command line starts
//! with it, never to the tree the pages and scripts describe, so no page, completion or
//! `--help` mentions it, and every other command line parses exactly as before.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgMatches, Command, CommandFactory};
use clap_complete::Shell;

const GENERATE: &str = "generate";

/// The shells completions are written for, each with the file name its packaging expects.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("creating {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("writing the man pages into {}: {source}", dir.display())]
    Man { dir: PathBuf, source: std::io::Error },
    #[error("writing the {shell} completions into {}: {source}", dir.display())]
    Completions { shell: Shell, dir: PathBuf, source: std::io::Error },
}

/// When the command line is `PROGRAM generate man|completions --out DIR`, writes them and
/// returns the files written (a malformed `generate` line exits with clap's usage error);
/// otherwise `None`, and the program parses its command line as it always does.
pub fn generate_if_asked<C: CommandFactory>() -> Option<Result<Vec<PathBuf>, DocsError>> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|first| first != GENERATE) {
        return None;
    }
    let matches = C::command().subcommand(generate_subcommand()).get_matches_from(args);
    let (_, generate) = matches.subcommand()?;
    Some(run_generate(C::command(), generate))
}

fn generate_subcommand() -> Command {
    Command::new(GENERATE)
        .hide(true)
        .about("Write man pages or shell completions (bash, zsh, fish) into a directory")
        .arg(Arg::new("what").value_name("man|completions").required(true).value_parser(["man", "completions"]))
        .arg(Arg::new("out").long("out").value_name("DIR").required(true).value_parser(clap::value_parser!(PathBuf)))
}

fn run_generate(cmd: Command, matches: &ArgMatches) -> Result<Vec<PathBuf>, DocsError> {
    let out = matches.get_one::<PathBuf>("out").expect("--out is required");
    match matches.get_one::<String>("what").map(String::as_str) {
        Some("man") => man_pages(cmd, out),
        _ => completions(cmd, out),
    }
}

/// One page per command and subcommand (`lbctl.1`, `lbctl-farm.1`, `lbctl-farm-create.1`, ...),
/// as git does; returns the files written.
pub fn man_pages(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>, DocsError> {
    fn write(cmd: Command, source: &str, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, source, dir, written)?;
        }
        written.push(clap_mangen::Man::new(cmd).source(source).generate_to(dir)?);
        Ok(())
    }
    create_dir(dir)?;
    // Built first, so that subcommands carry their full names (`lbctl-farm-create`).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    // Every page's footer names the program and version, subcommands' too (not `create 0.1.0`).
    let source = format!("{} {}", cmd.get_name(), cmd.get_version().unwrap_or_default());
    let mut written = Vec::new();
    write(cmd, source.trim_end(), dir, &mut written).map_err(|source| DocsError::Man { dir: dir.to_path_buf(), source })?;
    Ok(written)
}

/// `NAME.bash`, `_NAME` (zsh) and `NAME.fish`; returns the files written.
pub fn completions(mut cmd: Command, dir: &Path) -> Result<Vec<PathBuf>, DocsError> {
    create_dir(dir)?;
    let name = cmd.get_name().to_string();
    SHELLS
        .iter()
        .map(|&shell| {
            clap_complete::generate_to(shell, &mut cmd, &name, dir).map_err(|source| DocsError::Completions { shell, dir: dir.to_path_buf(), source })
        })
        .collect()
}

fn create_dir(dir: &Path) -> Result<(), DocsError> {
    std::fs::create_dir_all(dir).map_err(|source| DocsError::CreateDir { dir: dir.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(name = "demo", about = "A demo command")]
    struct Demo {
        #[command(subcommand)]
        command: DemoCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum DemoCommand {
        /// Serve things.
        Serve {
            #[arg(long)]
            port: u16,
        },
    }

    #[test]
    fn man_pages_cover_every_subcommand_and_never_the_hidden_generator() {
        let dir = tempfile::tempdir().unwrap();
        let mut names: Vec<String> = man_pages(<Demo as clap::CommandFactory>::command(), dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["demo-serve.1", "demo.1"]);
        let page = std::fs::read_to_string(dir.path().join("demo-serve.1")).unwrap();
        assert!(page.contains("port"), "{page}");
        assert!(!page.contains(GENERATE));
    }

    #[test]
    fn completions_are_written_for_bash_zsh_and_fish() {
        let dir = tempfile::tempdir().unwrap();
        let written = completions(<Demo as clap::CommandFactory>::command(), dir.path()).unwrap();
        let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["demo.bash", "_demo", "demo.fish"]);
        for file in written {
            let script = std::fs::read_to_string(&file).unwrap();
            assert!(script.contains("serve"), "{}", file.display());
            assert!(!script.contains(GENERATE), "{}", file.display());
        }
    }
}
