//! The command tree itself: clap's consistency checks, help on every verb, completions, the
//! values flags accept, and create bodies that the daemon's model types read.
use clap::{CommandFactory, Parser};
use lb_core::model;
use serde::de::DeserializeOwned;

use super::{cli, refused, request_of};
use crate::cli::{Cli, Output};

#[test]
fn command_tree_passes_clap_consistency_checks() {
    Cli::command().debug_assert();
}

#[test]
fn every_verb_has_help_text_and_answers_help() {
    fn walk(command: &clap::Command, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, bool)>) {
        for sub in command.get_subcommands() {
            path.push(sub.get_name().to_string());
            found.push((path.clone(), sub.get_about().is_some()));
            walk(sub, path, found);
            path.pop();
        }
    }
    let mut found = Vec::new();
    walk(&Cli::command(), &mut Vec::new(), &mut found);
    assert!(found.len() > 40, "the tree has {} commands", found.len());
    for (path, has_about) in found {
        let line = path.join(" ");
        if path.last().map(String::as_str) == Some("help") {
            continue;
        }
        assert!(has_about, "lbctl {line} has no help text");
        let args = std::iter::once("lbctl").chain(path.iter().map(String::as_str)).chain(["--help"]);
        let error = Cli::try_parse_from(args).expect_err("--help stops parsing");
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp, "lbctl {line} --help");
    }
}

#[test]
fn completions_cover_bash_zsh_and_fish() {
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "lbctl", &mut script);
        let script = String::from_utf8(script).expect("utf-8 script");
        for word in ["frontend", "refresh", "denied-source", "proxy-protocol"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert!(matches!(super::plan_of(&["completions", "zsh"]), Ok(crate::plan::Plan::Completions(_))));
}

#[test]
fn global_flags_go_anywhere_on_the_line() {
    let parsed = cli(&["frontend", "list", "-o", "json", "--api", "http://10.1.1.1:9000/", "--service", "prod", "--token-file", "/t"]);
    assert_eq!(parsed.global.output, Output::Json);
    assert_eq!(parsed.global.api, "http://10.1.1.1:9000/");
    assert_eq!(parsed.global.service, "prod");
    assert_eq!(parsed.global.token_file.as_deref(), Some(std::path::Path::new("/t")));
    let parsed = cli(&["--output", "json", "status"]);
    assert_eq!(parsed.global.output, Output::Json);
}

#[test]
fn flags_refuse_values_outside_the_spec() {
    for args in [
        &["server", "create", "--farm", "1", "--address", "10.0.0.1", "--weight", "257"][..],
        &["server", "create", "--farm", "1", "--address", "10.0.0.1", "--proxy-protocol", "v3"],
        &["server", "create", "--farm", "1", "--address", "10.0.0.1", "--port", "0"],
        &["route", "create", "--frontend", "1", "--target", "2", "--weight", "256"],
        &["route", "create", "--frontend", "1", "--action", "drop"],
        &["farm", "create", "--balance", "random"],
        &["farm", "create", "--probe-interval", "0"],
        &["rule", "create", "--route", "1", "--field", "path", "--match", "is"],
        &["rule", "create", "--route", "1", "--field", "sni", "--match", "equals"],
        &["frontend", "create", "--port", "443", "--output", "yaml"],
    ] {
        assert!(refused(args), "lbctl {} should be refused", args.join(" "));
    }
    // Bounds themselves are accepted.
    assert!(!refused(&["server", "create", "--farm", "1", "--address", "10.0.0.1", "--weight", "256"]));
    assert!(!refused(&["route", "create", "--frontend", "1", "--target", "2", "--weight", "255"]));
}

#[test]
fn a_bare_bool_flag_does_not_swallow_the_next_word() {
    // `--backup 3`: 3 is the server id, not a value of --backup.
    let request = request_of(&["server", "update", "--farm", "1", "--backup", "3"]);
    assert_eq!(request.path, "/tcp/farm/1/server/3");
    assert_eq!(request.body, Some(serde_json::json!({"backup": true})));
}

fn reads_as<T: DeserializeOwned + std::fmt::Debug>(args: &[&str]) -> T {
    let body = request_of(args).body.expect("a create has a body");
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{body} is not a {}: {e}", std::any::type_name::<T>()))
}

#[test]
fn create_bodies_are_objects_of_the_daemon_model() {
    let frontend: model::Frontend = reads_as(&[
        "frontend",
        "create",
        "--port",
        "443",
        "--zone",
        "gra",
        "--default-farm",
        "2",
        "--denied-source",
        "10.0.0.0/8",
        "--dedicated-ipfo",
        "192.0.2.1",
        "--disabled",
        "--display-name",
        "f",
        "--inspect-timeout",
        "3",
    ]);
    assert_eq!((frontend.port.as_str(), frontend.default_farm_id, frontend.disabled), ("443", Some(2), true));
    assert_eq!(frontend.denied_source, Some(vec!["10.0.0.0/8".to_string()]));

    let farm: model::Farm = reads_as(&[
        "farm",
        "create",
        "--balance",
        "source",
        "--stickiness",
        "sourceIp",
        "--port",
        "80",
        "--probe-type",
        "tls",
        "--probe-interval",
        "2",
        "--probe-match",
        "contains",
        "--probe-pattern",
        "OK",
        "--probe-negate",
        "--probe-force-ssl",
    ]);
    assert_eq!(farm.balance, Some(model::Balance::Source));
    assert_eq!(farm.stickiness, Some(model::Stickiness::SourceIp));
    let probe = farm.probe.expect("a probe");
    assert_eq!((probe.kind.as_deref(), probe.interval, probe.negate, probe.force_ssl), (Some("tls"), Some(2), Some(true), Some(true)));

    let server: model::Server = reads_as(&[
        "server",
        "create",
        "--farm",
        "1",
        "--address",
        "10.0.0.2",
        "--port",
        "8443",
        "--weight",
        "0",
        "--backup",
        "--probe",
        "--ssl",
        "--status",
        "inactive",
        "--proxy-protocol",
        "v1",
        "--on-marked-down",
        "shutdown-sessions",
    ]);
    assert_eq!(server.proxy_protocol_version, Some(model::ProxyProtocolVersion::V1));
    assert_eq!(server.on_marked_down, Some(model::OnMarkedDown::ShutdownSessions));
    assert_eq!(server.status, Some(model::ServerStatus::Inactive));
    assert_eq!((server.weight, server.backup, server.probe, server.ssl), (Some(0), true, true, true));

    let route: model::Route = reads_as(&["route", "create", "--frontend", "1", "--target", "2", "--weight", "5"]);
    assert_eq!(route.action, model::RouteAction { kind: "farm".into(), target: Some("2".into()) });

    let rule: model::Rule = reads_as(&["rule", "create", "--route", "1", "--field", "alpn", "--match", "in", "--pattern", "h2,http/1.1", "--negate"]);
    assert_eq!((rule.field.as_str(), rule.match_.as_str(), rule.negate), ("alpn", "in", true));
}
