//! Several nodes sharing one configuration in a real etcd (`--store etcd://…`): a refresh made
//! through any node reaches every node of the zone, or its task names the node that could not
//! apply it; two nodes editing the same farm at once give one success and one 409; etcd
//! stopped and restarted under load costs no connection and no configuration; a node killed
//! with -9 leaves the zone when its lease runs out and, restarted, serves the latest revision.
//!
//! Topology: the standard three namespaces. etcd runs in `lb` and listens on all its
//! addresses; node n1 runs in `lb` (with the kernel programs, carrying the client traffic),
//! n2 in `cli` and n3 in `srv` (API and listeners only), each reaching etcd through its veth.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::api::{stage_standard_seed, ApiClient, ApiDaemon, ApiDaemonOpts};
use lb_tests::etcd::Etcd;
use lb_tests::load::ClientLoad;
use lb_tests::netns::in_netns;
use lb_tests::{require_root, wait_for, Lab};
use serde_json::{json, Value};

/// Lease of every node: a killed node leaves the zone within this (plus a keepalive period).
const NODE_TTL: u64 = 2;

struct Zone {
    lab: Lab,
    etcd: Etcd,
    /// n1, n2, n3.
    nodes: Vec<ApiDaemon>,
}

/// Node `i` (1-based): where it runs and how it reaches etcd.
fn node_opts(lab: &Lab, etcd: &Etcd, i: usize, prefix: &str) -> ApiDaemonOpts {
    let (ns, etcd_addr) = match i {
        1 => (lab.topo.lb(), "127.0.0.1"),
        2 => (lab.topo.cli(), "10.77.1.1"),
        _ => (lab.topo.srv(), "10.77.2.1"),
    };
    let mut opts = ApiDaemonOpts::in_netns(ns);
    if i != 1 {
        // One set of kernel programs per interface: n1's.
        opts.daemon.ifaces.clear();
    }
    opts.daemon.extra_args = [
        "--store".to_string(),
        format!("etcd://{etcd_addr}:{}/{prefix}", etcd.port()),
        "--node".into(),
        format!("n{i}"),
        "--node-ttl".into(),
        NODE_TTL.to_string(),
    ]
    .into();
    opts
}

impl Zone {
    fn start(nodes: usize) -> Result<Self> {
        let lab = Lab::with_standard_backends()?;
        let etcd = Etcd::start_listening(Some(lab.topo.lb()), Ipv4Addr::UNSPECIFIED)?;
        let prefix = format!("lbtest-{}", std::process::id());
        let mut started = Vec::new();
        for i in 1..=nodes {
            started.push(ApiDaemon::start(node_opts(&lab, &etcd, i, &prefix))?);
        }
        let zone = Self { lab, etcd, nodes: started };
        zone.wait_nodes(nodes, Duration::from_secs(10))?;
        Ok(zone)
    }

    fn api(&self, i: usize) -> ApiClient {
        self.nodes[i - 1].client()
    }

    /// `GET /zone/test-zone/node` through node 1... of whichever node answers first.
    fn nodes_seen_by(&self, i: usize) -> Result<Vec<Value>> {
        let reply = self.api(i).get("/zone/local/node")?;
        ensure!(reply.status == 200, "GET /zone/local/node: {} {}", reply.status, reply.text);
        Ok(reply.json.as_array().cloned().unwrap_or_default())
    }

    fn wait_nodes(&self, count: usize, timeout: Duration) -> Result<Vec<Value>> {
        let mut last = Vec::new();
        let seen = wait_for(timeout, Duration::from_millis(100), || {
            last = self.nodes_seen_by(1).ok()?;
            (last.len() == count).then(|| last.clone())
        });
        seen.with_context(|| format!("expected {count} live nodes within {timeout:?}, saw {last:?}\netcd:\n{}", self.etcd.log_tail()))
    }
}

/// Farms h2 and h1 of the standard backends, frontend 443 (default h1), route to h2 for h2.
fn seed(api: &ApiClient) -> Result<()> {
    stage_standard_seed(api)
}

fn revisions(nodes: &[Value]) -> Vec<(String, i64)> {
    nodes.iter().map(|n| (n["name"].as_str().unwrap_or("?").to_string(), n["appliedRevision"].as_i64().unwrap_or(-1))).collect()
}

#[test]
fn a_refresh_through_any_node_reaches_every_node_or_names_the_node_that_failed() -> Result<()> {
    require_root!();
    let zone = Zone::start(3)?;
    seed(&zone.api(1))?;
    ensure!(zone.api(3).pending()? > 0, "changes staged through n1 are pending on n3 too");

    // Refreshed through n2: done only once n1, n2 and n3 all serve it.
    let task = zone.api(2).refresh(None)?;
    ensure!(task["status"] == "done", "refresh: {task}");
    let nodes = zone.nodes_seen_by(3)?;
    let revs = revisions(&nodes);
    ensure!(revs.len() == 3 && revs.iter().all(|(_, r)| *r > 0 && *r == revs[0].1), "every node serves the same revision: {revs:?}");
    for i in 1..=3 {
        let status = zone.api(i).get("/status")?.json;
        ensure!(status["applied"]["frontends"] == 1 && status["applied"]["servers"] == 4, "n{i} status: {status}");
        ensure!(status["state"] == "ok" && status["store"]["kind"] == "etcd" && status["store"]["reachable"] == true, "n{i} status: {status}");
        ensure!(status["store"]["appliedRevision"] == revs[0].1, "n{i} status: {status}");
    }
    ensure!(zone.api(1).pending()? == 0, "nothing pending after the refresh");
    // n1 carries traffic with what n2 refreshed.
    let served = zone.lab.curl("--http2", "h2.lb.test")?;
    ensure!(served.code == 200 && served.body.contains("farm h2"), "h2 client served by {served:?}");

    // n3 cannot listen on 4443 (something else holds it in its namespace): the refresh
    // reaches n1 and n2 and its task names n3 and why.
    let squatter = in_netns(zone.lab.topo.srv(), || Ok(TcpListener::bind((Ipv4Addr::UNSPECIFIED, 4443))?))?;
    zone.api(3).create("/tcp/frontend", json!({"port": "4443", "defaultFarmId": 1}))?;
    let task = zone.api(1).refresh(None)?;
    ensure!(task["status"] == "error", "refresh with n3 unable to listen: {task}");
    let message = task["message"].as_str().unwrap_or_default();
    ensure!(message.contains("node n3") && message.contains("4443"), "the task names the node and why: {message}");
    let nodes = zone.nodes_seen_by(2)?;
    let n3 = nodes.iter().find(|n| n["name"] == "n3").context("n3 listed")?;
    let failed = n3["failed"]["revision"].as_i64().context("n3 says which revision it failed")?;
    ensure!(n3["appliedRevision"] == revs[0].1, "n3 still serves the previous revision: {n3}");
    for name in ["n1", "n2"] {
        let node = nodes.iter().find(|n| n["name"] == name).context("listed")?;
        ensure!(node["appliedRevision"] == failed, "{name} applied revision {failed}: {node}");
    }
    drop(squatter);
    Ok(())
}

#[test]
fn two_nodes_changing_the_same_farm_at_once_get_one_success_and_one_conflict() -> Result<()> {
    require_root!();
    let zone = Zone::start(2)?;
    zone.api(1).create("/tcp/farm", json!({"displayName": "start", "port": 8443}))?;
    let (a, b) = (zone.api(1), zone.api(2));
    let mut conflicts = 0;
    for round in 0..40 {
        let barrier = Arc::new(Barrier::new(2));
        let put = |api: ApiClient, name: String| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                api.service("PUT", "/tcp/farm/1", Some(json!({"displayName": name})))
            })
        };
        let (ta, tb) = (put(a.clone(), format!("a{round}")), put(b.clone(), format!("b{round}")));
        let (ra, rb) = (ta.join().expect("thread")?, tb.join().expect("thread")?);
        let ok = [&ra, &rb].iter().filter(|r| (200..300).contains(&r.status)).count();
        ensure!(ok >= 1, "round {round}: neither change succeeded: {} {} / {} {}", ra.status, ra.text, rb.status, rb.text);
        for r in [&ra, &rb].into_iter().filter(|r| !(200..300).contains(&r.status)) {
            ensure!(r.status == 409 && r.class() == "Client::Conflict" && r.message().contains("farm 1"), "round {round}: {} {}", r.status, r.text);
            conflicts += 1;
        }
        let stored = a.get("/tcp/farm/1")?.json["displayName"].clone();
        if ok == 1 {
            // The loser changed nothing: the winner's name is the one stored.
            let winner = if (200..300).contains(&ra.status) { format!("a{round}") } else { format!("b{round}") };
            ensure!(stored == winner.as_str(), "round {round}: stored {stored}, the successful change was {winner}");
        }
        if conflicts >= 3 {
            break;
        }
    }
    eprintln!("conflicts seen: {conflicts}");
    ensure!(conflicts > 0, "40 rounds of simultaneous changes never overlapped");
    // Creations at once never conflict: each gets its own id.
    let barrier = Arc::new(Barrier::new(2));
    let create = |api: ApiClient| {
        let barrier = Arc::clone(&barrier);
        std::thread::spawn(move || {
            barrier.wait();
            api.create("/tcp/farm", json!({"port": 8443}))
        })
    };
    let (ta, tb) = (create(a.clone()), create(b.clone()));
    let (fa, fb) = (ta.join().expect("thread")?, tb.join().expect("thread")?);
    ensure!(fa["farmId"] != fb["farmId"], "two creations got the same id: {fa} {fb}");
    Ok(())
}

#[test]
fn etcd_stopped_and_restarted_under_load_loses_no_connection_and_no_configuration() -> Result<()> {
    require_root!();
    let mut zone = Zone::start(2)?;
    seed(&zone.api(1))?;
    zone.api(1).refresh_done()?;
    let farms_before = zone.api(2).get("/tcp/farm")?.json;

    let h2 = zone.lab.client("h2.lb.test").alpn(&["h2"]).timeout(Duration::from_secs(5));
    let h1 = zone.lab.client("h1.lb.test").alpn(&["http/1.1"]).timeout(Duration::from_secs(5));
    let load = ClientLoad::start(zone.lab.topo.cli(), vec![("h2".into(), h2), ("h1".into(), h1)], Duration::from_secs(60), 50_000);
    std::thread::sleep(Duration::from_millis(500));

    zone.etcd.stop();
    let stopped = Instant::now();
    let unreachable = wait_for(Duration::from_secs(8), Duration::from_millis(100), || {
        let status = zone.api(1).get("/status").ok()?.json;
        (status["state"] == "storeUnreachable").then_some(status)
    });
    let status = unreachable.context("n1's /status never said the store is unreachable")?;
    ensure!(status["store"]["reachable"] == false && status["applied"]["frontends"] == 1, "n1 status while etcd is down: {status}");
    let refused = zone.api(2).service("POST", "/tcp/farm", Some(json!({"port": 8443})))?;
    ensure!(refused.status == 503 && refused.class() == "Server::ServiceUnavailable", "a change while etcd is down: {} {}", refused.status, refused.text);
    ensure!(refused.message().contains("unreachable") && refused.message().contains("nothing was changed"), "{}", refused.text);
    let metrics = zone.nodes[0].client().raw("GET", "/metrics", None)?.text;
    ensure!(
        metrics.lines().any(|l| l.starts_with("lb_store_reachable{") && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(0.0)),
        "lb_store_reachable while etcd is down:\n{}",
        metrics.lines().filter(|l| l.contains("store")).collect::<Vec<_>>().join("\n")
    );
    std::thread::sleep(Duration::from_secs(2));
    let outage = stopped.elapsed();
    zone.etcd.start_again()?;

    // Both nodes register again and the API takes changes.
    let back = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        let status = zone.api(1).get("/status").ok()?.json;
        (status["store"]["reachable"] == true && zone.nodes_seen_by(2).ok()?.len() == 2).then_some(())
    });
    back.with_context(|| format!("the nodes did not come back within 15 s; etcd:\n{}", zone.etcd.log_tail()))?;
    ensure!(zone.api(2).get("/tcp/farm")?.json == farms_before, "the configuration survived etcd's restart");
    let route = zone.api(2).create("/tcp/route", json!({"action": {"type": "reject"}, "frontendId": 1, "weight": 5}))?;
    zone.api(2).create(&format!("/tcp/route/{}/rule", route["routeId"]), json!({"field": "sni", "match": "is", "pattern": "nobody.lb.test"}))?;
    let task = zone.api(2).refresh(None)?;
    ensure!(task["status"] == "done", "refresh after etcd came back: {task}");
    std::thread::sleep(Duration::from_millis(500));

    let report = load.stop();
    eprintln!("etcd down for {outage:?}; clients: {} requests, {} failed", report.ok, report.failures.len());
    ensure!(report.failures.is_empty(), "client connections failed: {:#?}", report.failures);
    ensure!(report.ok >= 20, "only {} requests during the test", report.ok);
    Ok(())
}

#[test]
fn a_node_killed_with_9_leaves_the_zone_and_rejoins_with_the_latest_revision() -> Result<()> {
    require_root!();
    let mut zone = Zone::start(3)?;
    seed(&zone.api(1))?;
    zone.api(1).refresh_done()?;

    zone.nodes[2].kill9();
    let killed = Instant::now();
    let left = zone.wait_nodes(2, Duration::from_secs(NODE_TTL + 8))?;
    let gone_after = killed.elapsed();
    eprintln!("n3 left the zone {gone_after:?} after its kill (lease {NODE_TTL} s)");
    ensure!(left.iter().all(|n| n["name"] != "n3"), "{left:?}");

    // A refresh with n3 gone waits for n1 and n2 only.
    zone.api(2).create("/tcp/farm/1/server", json!({"address": "10.77.2.4"}))?;
    let task = zone.api(2).refresh(None)?;
    ensure!(task["status"] == "done", "refresh without n3: {task}");
    let latest = revisions(&zone.nodes_seen_by(1)?)[0].1;

    // n3 restarts (its last start's options, no --config) and serves the latest revision
    // before it says it is ready.
    zone.nodes[2].restart()?;
    let status = zone.api(3).get("/status")?.json;
    ensure!(status["store"]["appliedRevision"] == latest && status["applied"]["servers"] == 5, "n3 after its restart: {status}");
    zone.wait_nodes(3, Duration::from_secs(10))?;
    if zone.nodes_seen_by(3)?.iter().any(|n| n["appliedRevision"] != latest) {
        bail!("a node does not serve revision {latest}: {:?}", revisions(&zone.nodes_seen_by(3)?));
    }
    Ok(())
}

/// A CA, etcd's certificate for 127.0.0.1, and a client certificate, in `dir`.
fn etcd_pki(dir: &std::path::Path) -> Result<lb_tests::etcd::EtcdTls> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "etcd test CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let issue = |names: Vec<String>, cn: &str, usage: Vec<ExtendedKeyUsagePurpose>| -> Result<(String, String)> {
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = usage;
        let key = KeyPair::generate()?;
        Ok((params.signed_by(&key, &ca, &ca_key)?.pem(), key.serialize_pem()))
    };
    let (server, server_key) =
        issue(vec!["127.0.0.1".into(), "localhost".into()], "etcd", vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])?;
    let (client, client_key) = issue(vec!["lb-node".into()], "lb-node", vec![ExtendedKeyUsagePurpose::ClientAuth])?;
    let tls = lb_tests::etcd::EtcdTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("etcd.pem"),
        key: dir.join("etcd.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    for (path, text) in [(&tls.ca, ca.pem()), (&tls.cert, server), (&tls.key, server_key), (&tls.client_cert, client), (&tls.client_key, client_key)] {
        std::fs::write(path, text)?;
    }
    Ok(tls)
}

fn local_node(store_args: Vec<String>) -> ApiDaemonOpts {
    let mut opts = ApiDaemonOpts::local();
    opts.daemon.extra_args = store_args;
    opts.daemon.print_log_on_drop = false;
    opts
}

#[test]
fn a_node_reaches_etcd_over_tls_with_a_client_certificate_or_says_what_is_missing() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let tls = etcd_pki(dir.path())?;
    let etcd = Etcd::start_tls(None, Ipv4Addr::LOCALHOST, tls.clone())?;
    let store = format!("etcd://127.0.0.1:{}/tls-{}", etcd.port(), std::process::id());
    let path = |p: &std::path::Path| p.display().to_string();
    let with_tls = vec![
        "--store".into(),
        store.clone(),
        "--store-ca".into(),
        path(&tls.ca),
        "--store-cert".into(),
        path(&tls.client_cert),
        "--store-key".into(),
        path(&tls.client_key),
    ];
    let node = ApiDaemon::start(local_node(with_tls))?;
    let farm = node.client().create("/tcp/farm", json!({"displayName": "over tls", "port": 8443}))?;
    ensure!(farm["farmId"] == 1, "{farm}");
    let status = node.client().get("/status")?.json;
    ensure!(status["store"]["kind"] == "etcd" && status["store"]["reachable"] == true, "{status}");
    ensure!(etcd.ctl(&["get", "--prefix", "--keys-only", &format!("/tls-{}/store/farm/", std::process::id())])?.stdout.len() > 1, "the farm is in etcd");

    // Without a client certificate etcd refuses the handshake: the daemon does not start,
    // and says which store it could not reach.
    let without_cert = vec!["--store".into(), store.clone(), "--store-ca".into(), path(&tls.ca)];
    let refused = ApiDaemon::start(local_node(without_cert)).err().context("a node without a client certificate started")?;
    let text = format!("{refused:#}");
    ensure!(text.contains(&store) || text.contains("--store"), "the error names the store: {text}");
    // A certificate without its key is a usage error.
    let half = vec!["--store".into(), store, "--store-ca".into(), path(&tls.ca), "--store-cert".into(), path(&tls.client_cert)];
    let refused = format!("{:#}", ApiDaemon::start(local_node(half)).err().context("started with a certificate and no key")?);
    ensure!(refused.contains("--store-cert and --store-key go together"), "{refused}");
    Ok(())
}

#[test]
fn a_node_logs_in_to_etcd_with_a_password_and_a_wrong_one_is_refused() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let mut etcd = Etcd::start(None)?;
    etcd.enable_auth("s3cret")?;
    let store = format!("etcd://127.0.0.1:{}/auth-{}", etcd.port(), std::process::id());
    let login = |password: &str| -> Result<Vec<String>> {
        let file = dir.path().join(format!("password-{password}"));
        std::fs::write(&file, format!("{password}\n"))?;
        Ok(vec!["--store".into(), store.clone(), "--store-user".into(), "root".into(), "--store-password-file".into(), file.display().to_string()])
    };
    let node = ApiDaemon::start(local_node(login("s3cret")?))?;
    node.client().create("/tcp/farm", json!({"port": 8443}))?;
    ensure!(node.client().get("/tcp/farm")?.json == json!([1]), "the farm reads back");
    let refused = format!("{:#}", ApiDaemon::start(local_node(login("wrong")?)).err().context("a wrong password was accepted")?);
    ensure!(refused.contains("authentication failed") || refused.contains("invalid"), "the error says why: {refused}");
    Ok(())
}

#[test]
fn a_node_restarted_while_etcd_is_down_serves_its_cached_configuration_and_catches_up() -> Result<()> {
    require_root!();
    let mut zone = Zone::start(2)?;
    seed(&zone.api(1))?;
    zone.api(1).refresh_done()?;
    let revision = revisions(&zone.nodes_seen_by(1)?)[0].1;

    zone.etcd.stop();
    zone.nodes[1].restart()?;
    let status = zone.api(2).get("/status")?.json;
    ensure!(status["state"] == "storeUnreachable" && status["store"]["appliedRevision"] == revision, "n2 restarted without etcd: {status}");
    ensure!(status["applied"]["frontends"] == 1 && !status["listeners"].as_array().is_none_or(Vec::is_empty), "n2 serves its cached configuration: {status}");
    // A node that never served has nothing to fall back on: it does not start.
    let prefix = format!("lbtest-{}", std::process::id());
    let fresh = ApiDaemon::start(node_opts(&zone.lab, &zone.etcd, 3, &prefix)).err().context("a node without a cache started while etcd was down")?;
    ensure!(format!("{fresh:#}").contains("cannot start from it"), "{fresh:#}");

    zone.etcd.start_again()?;
    zone.wait_nodes(2, Duration::from_secs(15))?;
    zone.api(1).create("/tcp/farm/1/server", json!({"address": "10.77.2.4"}))?;
    let task = zone.api(1).refresh(None)?;
    ensure!(task["status"] == "done", "refresh once etcd is back: {task}");
    let status = zone.api(2).get("/status")?.json;
    ensure!(status["state"] == "ok" && status["applied"]["servers"] == 5, "n2 caught up: {status}");
    Ok(())
}

#[test]
fn nodes_of_another_zone_sharing_the_store_are_listed_apart_and_never_waited_for() -> Result<()> {
    require_root!();
    let zone = Zone::start(1)?;
    let prefix = format!("lbtest-{}", std::process::id());
    let mut other = node_opts(&zone.lab, &zone.etcd, 2, &prefix);
    other.daemon.extra_args.extend(["--zone".to_string(), "b".to_string()]);
    let other = ApiDaemon::start(other)?;
    let zones = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let zones = zone.api(1).get("/zone").ok()?.json;
        (zones == json!(["local", "b"])).then_some(zones)
    });
    zones.with_context(|| format!("GET /zone: {}", zone.api(1).get("/zone").map(|r| r.text).unwrap_or_default()))?;
    ensure!(other.client().get("/zone")?.json == json!(["b", "local"]), "a node lists its own zone first");
    let b = zone.api(1).get("/zone/b/node")?.json;
    ensure!(b.as_array().is_some_and(|n| n.len() == 1) && b[0]["name"] == "n2" && b[0]["zone"] == "b", "{b}");
    ensure!(zone.nodes_seen_by(1)?.len() == 1, "zone local has n1 only");
    ensure!(zone.api(1).get("/zone/c/node")?.status == 404, "an unknown zone is 404");
    // A refresh of zone local waits for n1 only.
    seed(&zone.api(1))?;
    let task = zone.api(1).refresh(None)?;
    ensure!(task["status"] == "done" && task["zones"] == json!(["local"]), "{task}");
    Ok(())
}
