//! `GET /metrics`: the live daemon's exposition passes `promtool check metrics` under load and
//! counts each frontend's, farm's and server's connections; a real Prometheus server scrapes
//! the `--metrics` listener and PromQL returns the connections the test made; the metrics
//! listener answers without the token the API requires.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lb_tests::client::TlsClient;
use lb_tests::config::{Config, Frontend, Route, Rule};
use lb_tests::daemon::DaemonOpts;
use lb_tests::echo::echo_transfer;
use lb_tests::lab::standard::*;
use lb_tests::netns::{in_netns, run_in, spawn_in, LB_CLI_IF, LB_SRV_IF};
use lb_tests::{require_root, Lab};

const H1_CLIENTS: usize = 20;
const H2_CLIENTS: usize = 12;
/// Client threads making the connections at the same time.
const THREADS: usize = 4;

/// Frontend 1 ("web") on :443, default farm h1; route 1 sends `protocol is http/2.0` to h2.
fn config() -> Config {
    Config::new()
        .frontend(Frontend::new(1, "443").default_farm(H1_FARM).named("web"))
        .farm(h2_farm())
        .farm(h1_farm())
        .route(Route::to_farm(1, 1, H2_FARM).rule(Rule::new("protocol", "is", "http/2.0")))
}

fn opts_with(args: &[&str]) -> DaemonOpts {
    DaemonOpts { extra_args: args.iter().map(|s| s.to_string()).collect(), ..DaemonOpts::default() }
}

/// An address the daemon published in runtime.json (`api`, `metrics`).
fn published(lab: &Lab, key: &str) -> Result<String> {
    let runtime = lab.daemon()?.runtime();
    runtime[key].as_str().map(str::to_string).with_context(|| format!("runtime.json has no {key:?}: {runtime}"))
}

/// GET `url` from inside namespace `ns`; (status, body).
fn get_in(ns: &str, url: &str, token: Option<&str>) -> Result<(u16, String)> {
    let (url, token) = (url.to_string(), token.map(str::to_string));
    in_netns(ns, move || {
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build();
        let agent = ureq::Agent::new_with_config(config);
        let mut request = agent.get(&url);
        if let Some(token) = &token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string().with_context(|| format!("reading GET {url}"))?))
    })
}

fn scrape(lab: &Lab, addr: &str) -> Result<String> {
    let (status, text) = get_in(lab.topo.lb(), &format!("http://{addr}/metrics"), None)?;
    ensure!(status == 200, "GET /metrics answered {status}: {text}");
    Ok(text)
}

/// `promtool check metrics` (Debian package `prometheus`) on an exposition.
fn promtool_check(text: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool: install the Debian package `prometheus` (apt-get install prometheus), which ships it")?;
    child.stdin.take().context("promtool stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn has(text: &str, name: &str) -> bool {
    text.lines().any(|line| line.starts_with(&format!("{name} ")) || line.starts_with(&format!("{name}{{")))
}

/// H1_CLIENTS http/1.1 and H2_CLIENTS h2 GETs through the frontend, THREADS at a time.
fn make_connections(lab: &Lab) -> Result<()> {
    let h1 = lab.client("h1.lb.test").alpn(&["http/1.1"]);
    let h2 = lab.client("h2.lb.test").alpn(&["h2"]);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (h1, h2) = (&h1, &h2);
                s.spawn(move || {
                    lab.in_cli(|| {
                        for i in (t..H1_CLIENTS).step_by(THREADS) {
                            let backend = TlsClient::connect(h1)?.http_get("/")?.backend();
                            ensure!(backend.starts_with("farm h1 "), "h1 client {i} reached {backend:?}");
                        }
                        for i in (t..H2_CLIENTS).step_by(THREADS) {
                            let backend = TlsClient::connect(h2)?.http_get("/")?.backend();
                            ensure!(backend.starts_with("farm h2 "), "h2 client {i} reached {backend:?}");
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().expect("client thread"))
    })
}

/// Scrapes until `check` passes (counters of ended connections land when the relay ends).
fn scrape_until(lab: &Lab, addr: &str, what: &str, check: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(lab, addr)?;
        if check(&text) {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            bail!("{what} not reached within 15 s; last exposition:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exposition_under_load_passes_promtool_and_counts_per_frontend_farm_and_server() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    lab.start_with(&config(), opts_with(&["--metrics", "127.0.0.1:0", "--api", "127.0.0.1:0"]))?;
    let metrics = published(&lab, "metrics")?;
    let api = published(&lab, "api")?;

    // Scraped (and checked) while the clients run: the exposition must be valid mid-load.
    let during = std::thread::scope(|s| -> Result<Vec<String>> {
        let load = s.spawn(|| make_connections(&lab));
        let mut texts = Vec::new();
        while !load.is_finished() && texts.len() < 50 {
            texts.push(scrape(&lab, &metrics)?);
            std::thread::sleep(Duration::from_millis(50));
        }
        load.join().expect("load thread")?;
        Ok(texts)
    })?;
    ensure!(!during.is_empty(), "no scrape happened during the load");
    for text in &during {
        promtool_check(text)?;
    }

    let total = (H1_CLIENTS + H2_CLIENTS) as f64;
    let text = scrape_until(&lab, &metrics, "every connection counted as relayed", |t| {
        sum(t, "lb_frontend_connections_relayed_total", &[("frontend_id", "1")]) == total
    })?;
    promtool_check(&text)?;
    let front = [("frontend_id", "1"), ("frontend", "web")];
    ensure!(sum(&text, "lb_frontend_connections_accepted_total", &front) == total, "accepted:\n{text}");
    ensure!(sum(&text, "lb_frontend_connections_routed_total", &front) == total, "routed:\n{text}");
    ensure!(sum(&text, "lb_frontend_connections_rejected_total", &front) == 0.0, "rejected:\n{text}");
    ensure!(sum(&text, "lb_frontend_connections_failed_upstream_total", &front) == 0.0, "failed upstream:\n{text}");
    ensure!(sum(&text, "lb_frontend_hello_read_seconds_count", &front) == total, "hello-read histogram:\n{text}");
    ensure!(sum(&text, "lb_route_connections_matched_total", &[("route_id", "1")]) == H2_CLIENTS as f64, "route 1:\n{text}");
    for (farm, n) in [(H1_FARM, H1_CLIENTS), (H2_FARM, H2_CLIENTS)] {
        let farm = farm.to_string();
        let labels = [("farm_id", farm.as_str())];
        ensure!(sum(&text, "lb_farm_connections_routed_total", &labels) == n as f64, "farm {farm} routed:\n{text}");
        ensure!(sum(&text, "lb_server_connections_total", &labels) == n as f64, "servers of farm {farm}:\n{text}");
        ensure!(sum(&text, "lb_server_connect_seconds_count", &labels) == n as f64, "connect histogram of farm {farm}:\n{text}");
        ensure!(sum(&text, "lb_server_bytes_total", &[("farm_id", farm.as_str()), ("direction", "to_client")]) > 0.0, "bytes of farm {farm}:\n{text}");
    }
    // Round robin spreads each farm's connections over both its servers.
    for server in ["1", "2", "3", "4"] {
        ensure!(sum(&text, "lb_server_connections_total", &[("server_id", server)]) > 0.0, "server {server} got nothing:\n{text}");
        ensure!(sum(&text, "lb_server_up", &[("server_id", server)]) == 1.0, "server {server} not up:\n{text}");
    }
    ensure!(sum(&text, "lb_frontend_bytes_total", &[("frontend_id", "1"), ("direction", "to_server")]) > 0.0, "frontend bytes:\n{text}");
    let ended = scrape_until(&lab, &metrics, "no active connection", |t| sum(t, "lb_frontend_active_connections", &[("frontend_id", "1")]) == 0.0)?;
    ensure!(sum(&ended, "lb_server_active_connections", &[]) == 0.0, "server connections still active:\n{ended}");
    for family in [
        "lb_process_cpu_seconds_total",
        "lb_process_resident_memory_bytes",
        "lb_process_open_fds",
        "lb_process_start_time_seconds",
        "lb_store_writes_total",
        "lb_refresh_tasks_total",
    ] {
        ensure!(has(&text, family), "{family} missing:\n{text}");
    }
    if !lab.daemon()?.opts().ifaces.is_empty() {
        ensure!(has(&text, "lb_kernel_passed_total") && has(&text, "lb_kernel_acl_dropped_total"), "kernel counters missing:\n{text}");
        ensure!(has(&text, "lb_handoff_attempts_total"), "hand-off counters missing:\n{text}");
    }
    ensure!(!text.contains("10.77.1.2"), "a client address leaked into the labels:\n{text}");

    // The API serves the same exposition (no token configured here).
    let (status, from_api) = get_in(lab.topo.lb(), &format!("http://{api}/metrics"), None)?;
    ensure!(status == 200 && sum(&from_api, "lb_frontend_connections_accepted_total", &front) == total, "API /metrics ({status}):\n{from_api}");
    Ok(())
}

#[test]
fn metrics_listener_needs_no_token_while_the_api_does() -> Result<()> {
    require_root!();
    let mut lab = Lab::with_standard_backends()?;
    let token_dir = tempfile::tempdir()?;
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n")?;
    let token_arg = token_file.to_string_lossy().into_owned();
    lab.start_with(&config(), opts_with(&["--metrics", "127.0.0.1:0", "--api", "127.0.0.1:0", "--api-token-file", &token_arg]))?;
    let (metrics, api) = (published(&lab, "metrics")?, published(&lab, "api")?);
    let ns = lab.topo.lb().to_string();
    let (status, _) = get_in(&ns, &format!("http://{api}/metrics"), None)?;
    ensure!(status == 401, "API /metrics without the token answered {status}");
    let (status, text) = get_in(&ns, &format!("http://{api}/metrics"), Some("s3cret"))?;
    ensure!(status == 200 && has(&text, "lb_frontend_connections_accepted_total"), "API /metrics with the token ({status}):\n{text}");
    let (status, text) = get_in(&ns, &format!("http://{metrics}/metrics"), None)?;
    ensure!(status == 200 && has(&text, "lb_frontend_connections_accepted_total"), "--metrics /metrics ({status}):\n{text}");
    let (status, _) = get_in(&ns, &format!("http://{metrics}/ipLoadbalancing/test/status"), None)?;
    ensure!(status == 404, "the metrics listener served an API path ({status})");
    Ok(())
}

#[test]
fn a_handed_off_flow_counts_its_bytes_under_the_xdp_path() -> Result<()> {
    require_root!();
    const LEN: u64 = 8 << 20;
    let mut lab = Lab::with_standard_backends()?;
    // A hand-off needs the kernel programs on both interfaces and forwarding on.
    let out = run_in(lab.topo.lb(), &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])?;
    ensure!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
    let opts = DaemonOpts {
        ifaces: vec![LB_CLI_IF.to_string(), LB_SRV_IF.to_string()],
        extra_args: ["--handoff-linger", "0.5", "--metrics", "127.0.0.1:0"].map(String::from).to_vec(),
        ..DaemonOpts::default()
    };
    let config = Config::new().frontend(Frontend::new(1, "443").default_farm(ECHO_FARM).fastpath("xdp")).farm(echo_farm());
    lab.start_with(&config, opts)?;
    let metrics = published(&lab, "metrics")?;
    let client = lab.client("echo.lb.test").alpn(&["lb-echo"]).timeout(Duration::from_secs(30));
    let report = lab.in_cli(|| echo_transfer(&client, LEN, Duration::from_secs(30)))?;
    ensure!(report.sent == LEN && report.received == LEN, "{report:?}");
    // The flow's bytes are counted once the reaper ends it (after the linger).
    let text = scrape_until(&lab, &metrics, "the handed-off connection counted as relayed", |t| {
        sum(t, "lb_frontend_connections_relayed_total", &[("path", "xdp")]) == 1.0
    })?;
    promtool_check(&text)?;
    ensure!(sum(&text, "lb_handoffs_total", &[]) == 1.0, "hand-offs:\n{text}");
    // The hand-off's hold, and only attempts that held (promtool checked the shape above).
    let holds = sum(&text, "lb_handoff_hold_seconds_count", &[]);
    ensure!(holds >= 1.0 && holds <= sum(&text, "lb_handoff_attempts_total", &[]), "hand-off holds:\n{text}");
    ensure!(sum(&text, "lb_handoff_hold_seconds_sum", &[]) > 0.0, "hand-off holds:\n{text}");
    for direction in ["to_server", "to_client"] {
        let labels = [("frontend_id", "1"), ("direction", direction), ("path", "xdp")];
        let frames = sum(&text, "lb_frontend_bytes_total", &labels);
        // Whole frames: the payload plus headers, TLS records on top of the echo's bytes.
        ensure!(frames >= LEN as f64, "{direction}: {frames} xdp bytes for {LEN} payload bytes:\n{text}");
        let server = sum(&text, "lb_server_bytes_total", &[("server_id", &ECHO_SERVER.to_string()), ("direction", direction), ("path", "xdp")]);
        ensure!(server == frames, "{direction}: server {server} vs frontend {frames}:\n{text}");
    }
    ensure!(sum(&text, "lb_kernel_spliced_bytes_total", &[]) >= 2.0 * LEN as f64, "kernel spliced bytes:\n{text}");
    Ok(())
}

/// A free TCP port on 127.0.0.1 inside namespace `ns`.
fn free_port_in(ns: &str) -> Result<u16> {
    in_netns(ns, || Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()))
}

/// One PromQL instant query through Prometheus's HTTP API; the value of its only sample.
fn promql(ns: &str, prometheus: &str, query: &str) -> Result<Option<f64>> {
    let url = format!("http://{prometheus}/api/v1/query?query={}", percent_encode(query));
    let (status, body) = get_in(ns, &url, None)?;
    ensure!(status == 200, "{url} answered {status}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("parsing {body}"))?;
    ensure!(json["status"] == "success", "{url}: {body}");
    let result = json["data"]["result"].as_array().with_context(|| format!("no result array: {body}"))?;
    Ok(result.first().and_then(|sample| sample["value"][1].as_str()).and_then(|v| v.parse().ok()))
}

fn percent_encode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[test]
fn prometheus_scrapes_the_metrics_listener_and_promql_counts_the_connections() -> Result<()> {
    require_root!();
    ensure!(
        Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success()),
        "the `prometheus` server is not installed: install the Debian package `prometheus` (apt-get install prometheus)"
    );
    let mut lab = Lab::with_standard_backends()?;
    lab.start_with(&config(), opts_with(&["--metrics", "127.0.0.1:0"]))?;
    let metrics = published(&lab, "metrics")?;
    make_connections(&lab)?;
    let made = (H1_CLIENTS + H2_CLIENTS) as f64;

    let ns = lab.topo.lb().to_string();
    let dir = tempfile::Builder::new().prefix("lb-tests-prometheus-").tempdir()?;
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(
        &config_file,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: lb\n    static_configs:\n      - targets: ['{metrics}']\n"),
    )?;
    let listen = format!("127.0.0.1:{}", free_port_in(&ns)?);
    let log = dir.path().join("prometheus.log");
    // Killed when the guard drops, whatever happens below.
    let prometheus = spawn_in(
        &ns,
        &[
            "prometheus".to_string(),
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={listen}"),
        ],
        Some(log.clone()),
    )?;
    let query = "sum(lb_frontend_connections_accepted_total{job=\"lb\",frontend_id=\"1\"})";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Err(anyhow::anyhow!("no query made"));
    while Instant::now() < deadline {
        last = promql(&ns, &listen, query);
        if matches!(last, Ok(Some(v)) if v == made) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log_tail = || prometheus.log_tail(4000);
    match last {
        Ok(Some(v)) if v == made => {}
        other => bail!("PromQL {query} gave {other:?}, expected {made}; Prometheus log:\n{}", log_tail()),
    }
    let up = promql(&ns, &listen, "up{job=\"lb\"}")?;
    ensure!(up == Some(1.0), "up{{job=\"lb\"}} = {up:?}");
    let by_farm = promql(&ns, &listen, &format!("sum(lb_farm_connections_routed_total{{farm_id=\"{H2_FARM}\"}})"))?;
    ensure!(by_farm == Some(H2_CLIENTS as f64), "h2 farm routed = {by_farm:?}, expected {H2_CLIENTS}");
    drop(prometheus);
    Ok(())
}
