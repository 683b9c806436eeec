//! A network namespace per test, owned by a guard that deletes it on drop (even when the
//! test panics), with the topology bpf_fib_lookup needs: routes, forwarding, and permanent
//! neighbours so that no ARP/ND resolution is involved.
// Unsafe here: setns(2) and if_nametoindex(3) on the test's own namespace descriptors.
#![allow(unsafe_code)]
use std::{
    fs::File,
    os::fd::AsRawFd,
    panic,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

/// Client side: veth `c0` (peer `c1`), 10.1.0.1/24 and fd01::1/64.
pub const C0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
pub const C1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x11];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
/// Server side: veth `s0` (peer `s1`), 10.2.0.1/24 and fd02::1/64.
pub const S0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
pub const S1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x11];
/// Permanent neighbours: the server behind s0, and a second host on the client link.
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
pub const NEIGHBOUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x03];

pub const CLIENT_V4: [u8; 4] = [10, 1, 0, 2];
pub const FRONTEND_V4: [u8; 4] = [10, 1, 0, 1];
pub const LB_V4: [u8; 4] = [10, 2, 0, 1];
pub const SERVER_V4: [u8; 4] = [10, 2, 0, 2];
/// On the client link, with a permanent neighbour entry: its egress is c0 again.
pub const NEIGHBOUR_V4: [u8; 4] = [10, 1, 0, 3];
/// On the server link, without a neighbour entry.
pub const UNRESOLVED_V4: [u8; 4] = [10, 2, 0, 99];
/// Nowhere: no route (the namespace has no default route).
pub const UNROUTED_V4: [u8; 4] = [192, 0, 2, 1];

pub const CLIENT_V6: [u8; 16] = [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const FRONTEND_V6: [u8; 16] = [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const LB_V6: [u8; 16] = [0xfd, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const SERVER_V6: [u8; 16] = [0xfd, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
}

fn mac(bytes: &[u8; 6]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl Netns {
    /// Creates the namespace and its topology; the guard exists before the first command
    /// that could fail, so a half-built namespace is removed too.
    pub fn create() -> Self {
        let name = format!("lbxdp-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        let (c0, c1, s0, s1) = (mac(&C0_MAC), mac(&C1_MAC), mac(&S0_MAC), mac(&S1_MAC));
        for cmd in [
            format!("link add c0 address {c0} type veth peer name c1 address {c1}"),
            format!("link add s0 address {s0} type veth peer name s1 address {s1}"),
            "link set lo up".into(),
            "link set c0 up".into(),
            "link set c1 up".into(),
            "link set s0 up".into(),
            "link set s1 up".into(),
            "addr add 10.1.0.1/24 dev c0".into(),
            "addr add 10.2.0.1/24 dev s0".into(),
            "addr add fd01::1/64 dev c0 nodad".into(),
            "addr add fd02::1/64 dev s0 nodad".into(),
            format!("neigh add 10.2.0.2 lladdr {} dev s0 nud permanent", mac(&SERVER_MAC)),
            format!("neigh add fd02::2 lladdr {} dev s0 nud permanent", mac(&SERVER_MAC)),
            format!("neigh add 10.1.0.3 lladdr {} dev c0 nud permanent", mac(&NEIGHBOUR_MAC)),
            format!("neigh add 10.1.0.2 lladdr {} dev c0 nud permanent", mac(&CLIENT_MAC)),
        ] {
            let mut args = vec!["ip", "-n", &ns.name];
            args.extend(cmd.split(' '));
            run(&args);
        }
        // bpf_fib_lookup answers FWD_DISABLED unless the ingress interface forwards.
        run(&["ip", "netns", "exec", &ns.name, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
        ns
    }

    /// Runs `f` on a thread that entered the namespace (setns affects only the calling
    /// thread); a panic inside is re-raised here, after the thread is gone.
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let worker = thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a namespace file descriptor we own; it only changes this
            // thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        });
        match worker.join() {
            Ok(value) => value,
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The index of an interface of the calling thread's namespace.
pub fn ifindex(name: &str) -> u32 {
    let cname = std::ffi::CString::new(name).expect("no NUL in interface names");
    // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    assert_ne!(index, 0, "interface {name}: {}", std::io::Error::last_os_error());
    index
}
