//! The command tree. Object commands share one generic shape, [`Crud`], over the fields of the
//! object ([`Fields`]) and where its collection lives ([`Parent`]).
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use super::fields::{farm::FarmFields, frontend::FrontendFields, route::RouteFields, rule::RuleFields, server::ServerFields, Fields};

/// Command-line client of the load balancer's API (OVHcloud IPLB TCP API, under
/// /ipLoadbalancing/{serviceName}). Changes are staged until `lbctl refresh`.
#[derive(Debug, Parser)]
#[command(name = "lbctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten, next_help_heading = "Global options")]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Base URL of the daemon's API.
    #[arg(long, global = true, env = "LBCTL_API", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub api: String,
    /// Service name: requests go to {api}/ipLoadbalancing/{service}/...
    #[arg(long, global = true, env = "LBCTL_SERVICE", default_value = "lb", value_name = "NAME")]
    pub service: String,
    /// File holding an API token, sent as `Authorization: Bearer <token>`.
    #[arg(long, global = true, env = "LBCTL_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// `table` for people; `json` prints the server's JSON as it answered.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// TCP frontends: the ports (and addresses) clients connect to.
    #[command(subcommand)]
    Frontend(Crud<FrontendFields, NoParent>),
    /// TCP farms: groups of servers with a balancing method and a health probe.
    #[command(subcommand)]
    Farm(Crud<FarmFields, NoParent>),
    /// Servers of a farm (every verb needs --farm FARM_ID).
    #[command(subcommand)]
    Server(Crud<ServerFields, FarmParent>),
    /// TCP routes: which farm a frontend's connection goes to, or reject, when its rules match.
    #[command(subcommand)]
    Route(Crud<RouteFields, NoParent>),
    /// Rules of a route (every verb needs --route ROUTE_ID); a route acts when all its rules match.
    #[command(subcommand)]
    Rule(Crud<RuleFields, RouteParent>),
    /// Count staged (not yet applied) changes per zone: GET /pendingChanges.
    Pending,
    /// Apply the staged configuration (POST /refresh) and wait for its task to end.
    Refresh(RefreshArgs),
    /// Tasks, such as those a refresh starts.
    #[command(subcommand)]
    Task(TaskCommand),
    /// The service's status: GET /status.
    Status,
    /// The zones of the service: GET /zone.
    Zone,
    /// The live nodes serving a zone, with the configuration revision each applied:
    /// GET /zone/{zone}/node.
    Nodes {
        /// The zone (see `lbctl zone`).
        zone: String,
    },
    /// What the service accepts: route actions, rule fields, farm probes.
    #[command(subcommand)]
    Available(Available),
    /// Print a shell completion script (e.g. `lbctl completions bash > /etc/bash_completion.d/lbctl`).
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The verbs of an object kind. `F` holds its typed field flags, `P` its parent (a farm for
/// servers, a route for rules).
#[derive(Debug, Subcommand)]
pub enum Crud<F: Fields, P: Parent> {
    /// List them: a table fetches each object; `--output json` prints the server's list of ids.
    List {
        #[command(flatten)]
        parent: P,
    },
    /// Show one.
    Show {
        #[command(flatten)]
        parent: P,
        /// The object's id.
        #[arg(value_name = "ID")]
        id: u32,
    },
    /// Create one (POST) from typed flags, a raw --json/--json-file body, or both (flags win).
    Create {
        #[command(flatten)]
        parent: P,
        #[command(flatten)]
        fields: F,
        #[command(flatten)]
        raw: RawBody,
    },
    /// Change one (PUT): only the fields given are sent.
    Update {
        #[command(flatten)]
        parent: P,
        /// The object's id.
        #[arg(value_name = "ID")]
        id: u32,
        #[command(flatten)]
        fields: F,
        #[command(flatten)]
        raw: RawBody,
        /// Set this field to null ("not set"), by its flag name; repeatable.
        #[arg(long, value_name = "FIELD", value_parser = PossibleValuesParser::new(F::NULLABLE.iter().map(|(flag, _)| *flag)))]
        unset: Vec<String>,
    },
    /// Delete one.
    Delete {
        #[command(flatten)]
        parent: P,
        /// The object's id.
        #[arg(value_name = "ID")]
        id: u32,
    },
}

/// Where a kind's collection lives, below the service root.
pub trait Parent: Args {
    /// `/tcp`, `/tcp/farm/{id}` or `/tcp/route/{id}`.
    fn prefix(&self) -> String;
}

/// Frontends, farms, routes: directly under `/tcp`.
#[derive(Debug, Clone, Args)]
pub struct NoParent {}

impl Parent for NoParent {
    fn prefix(&self) -> String {
        "/tcp".to_string()
    }
}

#[derive(Debug, Clone, Args)]
pub struct FarmParent {
    /// The farm the servers belong to.
    #[arg(long, value_name = "FARM_ID")]
    pub farm: u32,
}

impl Parent for FarmParent {
    fn prefix(&self) -> String {
        format!("/tcp/farm/{}", self.farm)
    }
}

#[derive(Debug, Clone, Args)]
pub struct RouteParent {
    /// The route the rules belong to.
    #[arg(long, value_name = "ROUTE_ID")]
    pub route: u32,
}

impl Parent for RouteParent {
    fn prefix(&self) -> String {
        format!("/tcp/route/{}", self.route)
    }
}

/// A raw JSON object as the request body; typed flags given as well override its fields.
#[derive(Debug, Clone, Default, Args)]
pub struct RawBody {
    /// The body as JSON text, e.g. '{"port": "443"}'.
    #[arg(long, value_name = "JSON", conflicts_with = "json_file")]
    pub json: Option<String>,
    /// Read the JSON body from FILE (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RefreshArgs {
    /// The zone to apply; without it every zone is applied.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// Seconds to wait for the task to end before giving up (exit 1).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Print the task as the server returned it and do not wait.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List tasks: a table fetches each task; `--output json` prints the ids.
    List,
    /// Show one task.
    Show {
        /// The task's id.
        #[arg(value_name = "ID")]
        id: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum Available {
    /// Route action types: GET /availableRouteActions.
    RouteActions,
    /// Rule fields and their matches: GET /availableRouteRules.
    RouteRules,
    /// Farm probe types: GET /availableFarmProbes.
    FarmProbes,
}
