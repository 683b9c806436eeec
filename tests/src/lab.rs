//! One test's whole world: topology, certificates, backends and (once started) the daemon.
//! Fields drop in declaration order: daemon, backends, certificates, then the namespaces.

use anyhow::{Context, Result};

use crate::backends::Backends;
use crate::certs::Certs;
use crate::client::{ClientOpts, TlsClient};
use crate::config::Config;
use crate::curl::{curl_get, CurlResult};
use crate::daemon::{Daemon, DaemonOpts, Stats};
use crate::echo::EchoSession;
use crate::netns::{in_netns, Topology, VethKind};
use crate::{vip, LB_VIP};

pub struct Lab {
    pub daemon: Option<Daemon>,
    pub backends: Backends,
    pub certs: Certs,
    pub topo: Topology,
}

impl Lab {
    /// Namespaces and certificates; no backend, no daemon yet.
    pub fn new() -> Result<Self> {
        Self::with_veth(VethKind::Wire)
    }

    /// Like [`Lab::new`], the veths left as `veth` says.
    pub fn with_veth(veth: VethKind) -> Result<Self> {
        Self::on(Topology::with_veth(veth)?)
    }

    /// Certificates and backends (none started yet) on `topo`.
    pub fn on(topo: Topology) -> Result<Self> {
        let certs = Certs::generate()?;
        let backends = Backends::new(&topo, &certs)?;
        Ok(Self { daemon: None, backends, certs, topo })
    }

    /// Starts the daemon with `config` (default options).
    pub fn start(&mut self, config: &Config) -> Result<&Daemon> {
        self.start_with(config, DaemonOpts::default())
    }

    pub fn start_with(&mut self, config: &Config, opts: DaemonOpts) -> Result<&Daemon> {
        self.daemon = None;
        let daemon = Daemon::start_with(&self.topo, config, opts)?;
        Ok(self.daemon.insert(daemon))
    }

    pub fn daemon(&self) -> Result<&Daemon> {
        self.daemon.as_ref().context("daemon not started")
    }

    pub fn stats(&self) -> Result<Stats> {
        self.daemon()?.stats()
    }

    /// A rustls client of the frontend on port 443 presenting `sni`.
    pub fn client(&self, sni: &str) -> ClientOpts {
        ClientOpts::new(self.certs.roots(), sni, vip(443))
    }

    /// An echo session through the frontend on 443 (SNI echo.lb.test, ALPN lb-echo), opened
    /// from the client namespace, which has exchanged its first KiB.
    pub fn echo_session(&self, idle_timeout: std::time::Duration) -> Result<EchoSession> {
        let opts = self.client("echo.lb.test").alpn(&["lb-echo"]);
        self.in_cli(|| {
            let mut session = TlsClient::connect(&opts)?.into_echo(idle_timeout)?;
            session.exchange(1024)?;
            Ok(session)
        })
    }

    /// Runs `f` inside the client namespace.
    pub fn in_cli<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        in_netns(self.topo.cli(), f)
    }

    /// Runs `f` inside the server namespace.
    pub fn in_srv<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        in_netns(self.topo.srv(), f)
    }

    /// `curl <flag> https://<host>/` from the client namespace through the frontend on 443.
    pub fn curl(&self, version_flag: &str, host: &str) -> Result<CurlResult> {
        curl_get(self.topo.cli(), version_flag, host, 443, &LB_VIP.to_string(), &self.certs.ca_pem())
    }
}

/// The standard backends of [`Lab::with_standard_backends`] and their farms.
pub mod standard {
    use crate::config::{Farm, Probe, Server};

    pub const H2_FARM: u32 = 1;
    pub const H1_FARM: u32 = 2;
    pub const ECHO_FARM: u32 = 3;
    pub const DEFAULT_FARM: u32 = 4;
    pub const PLAIN_FARM: u32 = 5;
    /// The echo farm's only server.
    pub const ECHO_SERVER: u32 = 5;

    /// (listen address, ALPN offered, name) of every standard TLS backend.
    pub const TLS_BACKENDS: &[(&str, &[&str], &str)] = &[
        ("10.77.2.2:8443", &["h2"], "farm h2 (server 1)"),
        ("10.77.2.3:8443", &["h2"], "farm h2 (server 2)"),
        ("10.77.2.4:8443", &["http/1.1"], "farm h1 (server 1)"),
        ("10.77.2.5:8443", &["http/1.1"], "farm h1 (server 2)"),
        ("10.77.2.2:9443", &["lb-echo", "http/1.1"], "farm echo (server 1)"),
        ("10.77.2.3:9444", &["http/1.1"], "farm default (server 1)"),
    ];
    /// The plain TCP echo backend.
    pub const PLAIN_ECHO: (&str, &str) = ("10.77.2.4:7000", "farm plain (server 1)");

    /// h2-only servers 10.77.2.2-3:8443 (server ids 1, 2).
    pub fn h2_farm() -> Farm {
        Farm::new(H2_FARM, "h2").port(8443).server(Server::new(1, "10.77.2.2", 8443)).server(Server::new(2, "10.77.2.3", 8443))
    }
    /// http/1.1-only servers 10.77.2.4-5:8443 (server ids 3, 4).
    pub fn h1_farm() -> Farm {
        Farm::new(H1_FARM, "h1").port(8443).server(Server::new(3, "10.77.2.4", 8443)).server(Server::new(4, "10.77.2.5", 8443))
    }
    /// The lb-echo server 10.77.2.2:9443 (server id 5).
    pub fn echo_farm() -> Farm {
        Farm::new(ECHO_FARM, "echo").server(Server::new(ECHO_SERVER, "10.77.2.2", 9443))
    }
    /// The echo farm, its server probed on a port where nothing listens: marked down after
    /// two failed probes, 2 s apart, while its real port keeps serving the sessions already
    /// open (unless `shutdown_sessions`: `onMarkedDown: shutdown-sessions`).
    pub fn echo_farm_soon_down(shutdown_sessions: bool) -> Farm {
        let mut probe = Probe::new("tcp").interval(2);
        probe.port = Some(9);
        let mut server = Server::new(ECHO_SERVER, "10.77.2.2", 9443).probed();
        if shutdown_sessions {
            server = server.shutdown_sessions_when_down();
        }
        Farm::new(ECHO_FARM, "echo").probe(probe).server(server)
    }
    /// An http/1.1 server 10.77.2.3:9444 (server id 6), for default-farm checks.
    pub fn default_farm() -> Farm {
        Farm::new(DEFAULT_FARM, "default").server(Server::new(6, "10.77.2.3", 9444))
    }
    /// The plain TCP echo 10.77.2.4:7000 (server id 7).
    pub fn plain_farm() -> Farm {
        Farm::new(PLAIN_FARM, "plain").server(Server::new(7, "10.77.2.4", 7000))
    }
}

impl Lab {
    /// A lab with every [`standard`] backend running.
    pub fn with_standard_backends() -> Result<Self> {
        Self::standard_on(VethKind::Wire)
    }

    /// [`Lab::with_standard_backends`] on veths left as `veth` says.
    pub fn standard_on(veth: VethKind) -> Result<Self> {
        Self::start_standard_backends(Self::with_veth(veth)?)
    }

    /// The standard backends behind a one-armed load balancer ([`Topology::one_armed`]):
    /// its only interface is `lbc`.
    pub fn one_armed_on(veth: VethKind) -> Result<Self> {
        Self::start_standard_backends(Self::on(Topology::one_armed(veth)?)?)
    }

    /// The standard backends behind a load balancer on a bridge ([`Topology::bridged`]):
    /// its only interface is `br0`.
    pub fn bridged_on(veth: VethKind) -> Result<Self> {
        Self::start_standard_backends(Self::on(Topology::bridged(veth)?)?)
    }

    fn start_standard_backends(mut lab: Self) -> Result<Self> {
        for (listen, alpn, name) in standard::TLS_BACKENDS {
            lab.backends.tls(listen, alpn, name)?;
        }
        lab.backends.plain_echo(standard::PLAIN_ECHO.0, standard::PLAIN_ECHO.1)?;
        Ok(lab)
    }
}
