//! The program loaded from the daemon's own object, its maps, and BPF_PROG_TEST_RUN
//! (aya 0.14 does not expose it, so the bpf(2) call is made here).
// Unsafe here: the raw bpf(BPF_PROG_TEST_RUN) syscall, which aya 0.14 does not expose.
#![allow(unsafe_code)]
use std::os::fd::{AsFd, AsRawFd};

use aya::{
    maps::{DevMapHash, HashMap, PerCpuArray},
    programs::{SchedClassifier, Xdp},
    Ebpf,
};
use lb_common::{
    maps::{CountersMap, EgressMap, FlowsMap, MapDecl, SpliceMap},
    Counter, FlowKey, FlowValue, SpliceEntry, PROGRAM_TC, PROGRAM_TC_EGRESS, PROGRAM_XDP,
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` as the test run takes it: data offsets plus the receiving interface.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// `struct __sk_buff` as the test run takes it (include/uapi/linux/bpf.h, 192 bytes): all
/// zero but the device the frame arrives on.
#[repr(C)]
struct SkBuffMd {
    words: [u32; 48],
}

const SKB_IFINDEX: usize = 10;

pub struct Dataplane {
    ebpf: Ebpf,
}

impl Dataplane {
    pub fn load() -> Self {
        let mut ebpf = Ebpf::load(lb_user::kernel::bpf::XDP_OBJECT).expect("loading the XDP object");
        let program: &mut Xdp = ebpf.program_mut(PROGRAM_XDP).expect("program in object").try_into().expect("an XDP program");
        if let Err(e) = program.load() {
            panic!("the verifier refused the program: {e:#?}");
        }
        let tc: &mut SchedClassifier = ebpf.program_mut(PROGRAM_TC).expect("tc program in object").try_into().expect("a tc program");
        if let Err(e) = tc.load() {
            panic!("the verifier refused the tc program: {e:#?}");
        }
        let egress: &mut SchedClassifier = ebpf.program_mut(PROGRAM_TC_EGRESS).expect("tc egress program in object").try_into().expect("a tc program");
        if let Err(e) = egress.load() {
            panic!("the verifier refused the tc egress program: {e:#?}");
        }
        Self { ebpf }
    }

    pub fn tc_verified_instructions(&self) -> Option<u32> {
        let tc: &SchedClassifier = self.ebpf.program(PROGRAM_TC)?.try_into().ok()?;
        tc.info().ok()?.verified_instruction_count()
    }

    /// Runs the tc program once on `frame` as if received on `ifindex` (an skb whose
    /// checksum state is CHECKSUM_NONE, as the test run builds it).
    pub fn run_tc(&self, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        let tc: &SchedClassifier = self.ebpf.program(PROGRAM_TC).expect("tc program").try_into().expect("a tc program");
        let mut ctx = SkBuffMd { words: [0; 48] };
        ctx.words[SKB_IFINDEX] = ifindex;
        let fd = tc.fd().expect("loaded program").as_fd().as_raw_fd();
        test_run(fd, frame, (&ctx as *const SkBuffMd).cast(), std::mem::size_of::<SkBuffMd>())
    }

    /// Runs the tc egress program once on `frame`, a frame our own socket sends out of
    /// `ifindex` (CHECKSUM_NONE: its checksum is complete).
    pub fn run_tc_egress(&self, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        let tc: &SchedClassifier = self.ebpf.program(PROGRAM_TC_EGRESS).expect("tc egress program").try_into().expect("a tc program");
        let mut ctx = SkBuffMd { words: [0; 48] };
        ctx.words[SKB_IFINDEX] = ifindex;
        let fd = tc.fd().expect("loaded program").as_fd().as_raw_fd();
        test_run(fd, frame, (&ctx as *const SkBuffMd).cast(), std::mem::size_of::<SkBuffMd>())
    }

    fn program(&self) -> &Xdp {
        self.ebpf.program(PROGRAM_XDP).expect("program in object").try_into().expect("an XDP program")
    }

    pub fn verified_instructions(&self) -> Option<u32> {
        self.program().info().ok()?.verified_instruction_count()
    }

    /// Runs the program once on `frame` as if received on `ifindex`; returns the action and
    /// the frame as the program left it.
    pub fn run(&self, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        let program = self.program();
        let fd = program.fd().expect("loaded program").as_fd().as_raw_fd();
        let ctx = XdpMd { data_end: frame.len() as u32, ingress_ifindex: ifindex, ..Default::default() };
        test_run(fd, frame, (&ctx as *const XdpMd).cast(), std::mem::size_of::<XdpMd>())
    }

    pub fn splice(&mut self, key: FlowKey, entry: SpliceEntry) {
        let mut map: HashMap<_, FlowKey, SpliceEntry> = self.ebpf.map_mut(SpliceMap::NAME).expect("splice map").try_into().expect("hash map");
        map.insert(key, entry, 0).expect("writing the splice map");
    }

    pub fn splice_entry(&self, key: &FlowKey) -> SpliceEntry {
        let map: HashMap<_, FlowKey, SpliceEntry> = self.ebpf.map(SpliceMap::NAME).expect("splice map").try_into().expect("hash map");
        map.get(key, 0).expect("splice entry present")
    }

    pub fn pin_flow(&mut self, key: FlowKey, value: FlowValue) {
        let mut map: HashMap<_, FlowKey, FlowValue> = self.ebpf.map_mut(FlowsMap::NAME).expect("flow map").try_into().expect("hash map");
        map.insert(key, value, 0).expect("writing the flow map");
    }

    pub fn flow(&self, key: &FlowKey) -> FlowValue {
        let map: HashMap<_, FlowKey, FlowValue> = self.ebpf.map(FlowsMap::NAME).expect("flow map").try_into().expect("hash map");
        map.get(key, 0).expect("flow entry present")
    }

    /// Devmap entries must be written from inside the namespace that owns the interface.
    pub fn allow_egress(&mut self, ifindex: u32) {
        let mut map: DevMapHash<_> = self.ebpf.map_mut(EgressMap::NAME).expect("egress map").try_into().expect("devmap hash");
        map.insert(ifindex, ifindex, None, 0).expect("writing the egress devmap");
    }

    pub fn forbid_egress(&mut self, ifindex: u32) {
        let mut map: DevMapHash<_> = self.ebpf.map_mut(EgressMap::NAME).expect("egress map").try_into().expect("devmap hash");
        map.remove(ifindex).expect("removing from the egress devmap");
    }

    pub fn counter(&self, counter: Counter) -> u64 {
        let map: PerCpuArray<_, u64> = self.ebpf.map(CountersMap::NAME).expect("counters").try_into().expect("per-cpu array");
        map.get(&counter.index(), 0).expect("counter slot").iter().sum()
    }
}

/// One BPF_PROG_TEST_RUN of the program `fd` on `frame` with the context `ctx` (`ctx_len`
/// bytes); returns the program's return value and the frame as it left it.
fn test_run(fd: i32, frame: &[u8], ctx: *const u8, ctx_len: usize) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: ctx_len as u32,
        ctx_in: ctx as u64,
        ..Default::default()
    };
    // SAFETY: attr is a valid BPF_PROG_TEST_RUN attribute whose pointers name live buffers of
    // the sizes given (ctx: ctx_len bytes, owned by the caller for the call); the kernel
    // writes at most data_size_out bytes to out.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &mut attr as *mut TestRunAttr, std::mem::size_of::<TestRunAttr>()) };
    assert_eq!(rc, 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    out.truncate(attr.data_size_out as usize);
    (attr.retval, out)
}
