use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_core::model::{Frontend, ServiceConfig};

use super::*;

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn protocols_hold_each_vip_once_sorted_in_its_family() {
    let text = vip_protocols(&ips(&["10.0.0.2", "fd00::1", "10.0.0.1", "10.0.0.2"]));
    let expected = "# Written by lb-user: the VIPs this node announces. Replaced on every change; do not edit.\n\
                    protocol static lb_vips4 {\n  ipv4;\n  route 10.0.0.1/32 blackhole;\n  route 10.0.0.2/32 blackhole;\n}\n\
                    protocol static lb_vips6 {\n  ipv6;\n  route fd00::1/128 blackhole;\n}\n";
    assert_eq!(text, expected);
}

#[test]
fn protocols_are_present_when_empty() {
    let text = vip_protocols(&[]);
    assert!(text.contains("protocol static lb_vips4 {\n  ipv4;\n}\n"), "{text}");
    assert!(text.contains("protocol static lb_vips6 {\n  ipv6;\n}\n"), "{text}");
    assert!(!text.contains("route"), "{text}");
    // One family only: the other protocol is still there, empty.
    let v6 = vip_protocols(&ips(&["fd00::1"]));
    assert!(v6.contains("protocol static lb_vips4 {\n  ipv4;\n}\n"), "{v6}");
}

fn frontend(zone: &str, ipfo: Option<&[&str]>) -> Frontend {
    Frontend { port: "443".into(), zone: zone.into(), dedicated_ipfo: ipfo.map(|l| l.iter().map(|s| s.to_string()).collect()), ..Frontend::default() }
}

#[test]
fn vips_of_takes_the_zone_and_all_and_nothing_else() {
    let config = ServiceConfig {
        frontends: vec![
            frontend("gra", Some(&["10.0.0.3", "10.0.0.1/32"])),
            frontend("all", Some(&["fd00::1/128", "10.0.0.1"])),
            frontend("rbx", Some(&["10.0.0.9"])),
            frontend("gra", None),
        ],
        ..ServiceConfig::default()
    };
    assert_eq!(vips_of(&config, "gra"), ips(&["10.0.0.1", "10.0.0.3", "fd00::1"]));
    assert_eq!(vips_of(&config, "rbx"), ips(&["10.0.0.1", "10.0.0.9", "fd00::1"]));
    assert_eq!(vips_of(&config, "sbg"), ips(&["10.0.0.1", "fd00::1"]));
    assert_eq!(vips_of(&ServiceConfig::default(), "gra"), Vec::<IpAddr>::new());
}

#[test]
fn vips_of_skips_disabled_frontends_and_what_is_not_one_address() {
    let mut disabled = frontend("gra", Some(&["10.0.0.7"]));
    disabled.disabled = true;
    let odd = [
        "",
        "not an address",
        "10.0.0.0/24",
        "10.0.0.1/128",
        "fd00::/64",
        "fd00::2/32",
        "10.0.0.1/",
        "/32",
        "10.0.0.1/32/32",
        "fe80::1%eth0",
        "10.0.0.256",
        " 10.0.0.5 ",
        "\t10.0.0.6/32\n",
    ];
    let config = ServiceConfig { frontends: vec![disabled, frontend("gra", Some(&odd))], ..ServiceConfig::default() };
    assert_eq!(vips_of(&config, "gra"), ips(&["10.0.0.5", "10.0.0.6"]));
}

/// A stand-in for birdc: logs its arguments to `calls`, prints `reply`, exits with `status`
/// (files next to it, so a test changes its behaviour without rewriting the script).
struct FakeBirdc {
    dir: tempfile::TempDir,
}

impl FakeBirdc {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("birdc");
        std::fs::write(
            &script,
            // A call is counted once its answer is read: a test that changes the answer after
            // seeing a call changes the next call's, not this one's (CI of c58c04f: the first,
            // refused call read the answer meant for the retry).
            "#!/bin/sh\n[ \"$1\" = --probe ] && exit 0\nd=$(dirname \"$0\")\n[ -f \"$d/sleep\" ] && sleep \"$(cat \"$d/sleep\")\"\ncat \"$d/reply\"\ns=$(cat \"$d/status\")\necho \"$*\" >> \"$d/calls\"\nexit \"$s\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fake = Self { dir };
        fake.answer("Reading configuration from /etc/bird/bird.conf\nReconfigured\n", 0);
        // Another test's fork may briefly hold the new script open for writing (ETXTBSY): wait
        // until it runs.
        for _ in 0..100 {
            match std::process::Command::new(&script).arg("--probe").status() {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("running {}: {e}", script.display()),
            }
        }
        fake
    }

    fn answer(&self, reply: &str, status: i32) {
        std::fs::write(self.dir.path().join("reply"), reply).unwrap();
        std::fs::write(self.dir.path().join("status"), status.to_string()).unwrap();
    }

    fn calls(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("calls")).map(|s| s.lines().count()).unwrap_or(0)
    }

    fn include(&self) -> PathBuf {
        self.dir.path().join("lb-vips.conf")
    }

    fn announcer(&self) -> BirdAnnouncer {
        BirdAnnouncer::new(self.include(), PathBuf::from("/run/test/bird.ctl")).with_birdc(self.dir.path().join("birdc"))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn announce_writes_the_file_reconfigures_and_skips_an_unchanged_set() {
    let fake = FakeBirdc::new();
    let announcer = fake.announcer();
    assert!(announcer.announced().is_empty());
    announcer.announce(&ips(&["fd00::1", "10.0.0.1"])).await.unwrap();
    assert_eq!(read(&fake.include()), vip_protocols(&ips(&["10.0.0.1", "fd00::1"])));
    assert!(!fake.dir.path().join("lb-vips.conf.tmp").exists());
    assert_eq!(announcer.announced(), ips(&["10.0.0.1", "fd00::1"]));
    assert_eq!(read(&fake.dir.path().join("calls")), "-s /run/test/bird.ctl configure\n");

    // The same set, in another order and with a duplicate: nothing to do.
    announcer.announce(&ips(&["10.0.0.1", "fd00::1", "10.0.0.1"])).await.unwrap();
    assert_eq!(fake.calls(), 1);

    fake.answer("Reading configuration from /etc/bird/bird.conf\nReconfiguration in progress\n", 0);
    announcer.announce(&ips(&["10.0.0.1"])).await.unwrap();
    assert_eq!(fake.calls(), 2);
    assert_eq!(announcer.announced(), ips(&["10.0.0.1"]));

    announcer.withdraw().await.unwrap();
    assert_eq!(read(&fake.include()), vip_protocols(&[]));
    assert_eq!(announcer.announced(), Vec::<IpAddr>::new());
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn a_refusal_is_an_error_with_birds_output_and_keeps_the_last_accepted_set() {
    let fake = FakeBirdc::new();
    let announcer = fake.announcer();
    announcer.announce(&ips(&["10.0.0.1"])).await.unwrap();

    fake.answer("Reading configuration from /etc/bird/bird.conf\n/etc/bird/bird.conf:12:3 syntax error, unexpected CF_SYM_UNDEFINED\n", 0);
    let err = announcer.announce(&ips(&["10.0.0.2"])).await.unwrap_err().to_string();
    assert!(err.contains("/run/test/bird.ctl") && err.contains("syntax error, unexpected CF_SYM_UNDEFINED"), "{err}");
    assert!(err.contains("lb-vips.conf"), "{err}");
    assert_eq!(announcer.announced(), ips(&["10.0.0.1"]));

    fake.answer("Unable to connect to server control socket (/run/test/bird.ctl): No such file or directory\n", 1);
    let err = announcer.announce(&ips(&["10.0.0.2"])).await.unwrap_err();
    assert!(matches!(err, AnnounceError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("Unable to connect"), "{err}");
    // "Reconfigured" with a failing exit status is no success either.
    fake.answer("Reconfigured\n", 2);
    assert!(announcer.withdraw().await.is_err());
    assert_eq!(announcer.announced(), ips(&["10.0.0.1"]));

    // Accepted again: the set differs from the last accepted one, so BIRD is asked again.
    fake.answer("Reconfigured\n", 0);
    announcer.announce(&ips(&["10.0.0.2"])).await.unwrap();
    assert_eq!(announcer.announced(), ips(&["10.0.0.2"]));
}

#[tokio::test]
async fn a_missing_birdc_or_an_unwritable_file_is_an_error_naming_it() {
    let fake = FakeBirdc::new();
    let announcer = fake.announcer().with_birdc(PathBuf::from("/nonexistent/birdc"));
    let err = announcer.announce(&ips(&["10.0.0.1"])).await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/birdc") && err.contains("/run/test/bird.ctl"), "{err}");

    let announcer = BirdAnnouncer::new(PathBuf::from("/nonexistent/dir/lb-vips.conf"), PathBuf::from("/run/test/bird.ctl"));
    let err = announcer.announce(&ips(&["10.0.0.1"])).await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/dir/lb-vips.conf"), "{err}");
}

#[tokio::test]
async fn a_hung_birdc_times_out() {
    let fake = FakeBirdc::new();
    std::fs::write(fake.dir.path().join("sleep"), "30").unwrap();
    let announcer = fake.announcer();
    let started = std::time::Instant::now();
    let err = announcer.announce(&ips(&["10.0.0.1"])).await.unwrap_err();
    assert!(matches!(err, AnnounceError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("/run/test/bird.ctl"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test]
async fn run_follows_the_channel_retries_and_withdraws_when_it_closes() {
    let fake = FakeBirdc::new();
    fake.answer("syntax error\n", 0);
    let (tx, rx) = watch::channel(ips(&["10.0.0.1"]));
    let task = tokio::spawn(run(fake.announcer(), rx));
    let fake_ref = &fake;
    let wait = move |calls: usize| async move {
        for _ in 0..500 {
            if fake_ref.calls() >= calls {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("birdc called {} times, not {calls}", fake_ref.calls());
    };
    // Refused at first, accepted on the retry 2 s later.
    wait(1).await;
    fake.answer("Reconfigured\n", 0);
    wait(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(read(&fake.include()), vip_protocols(&ips(&["10.0.0.1"])));

    tx.send(ips(&["10.0.0.1", "fd00::1"])).unwrap();
    wait(3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(read(&fake.include()), vip_protocols(&ips(&["10.0.0.1", "fd00::1"])));
    // The same set again: no reconfiguration.
    tx.send(ips(&["fd00::1", "10.0.0.1"])).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.calls(), 3);

    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("run returns once the channel closes").unwrap();
    assert_eq!(fake.calls(), 4);
    assert_eq!(read(&fake.include()), vip_protocols(&[]));
}
