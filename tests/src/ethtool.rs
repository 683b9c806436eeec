//! The two ethtool settings the topology needs, through the legacy `SIOCETHTOOL` ioctl (the
//! `ethtool` tool is not assumed to be installed). Must run on a thread inside the namespace of
//! the device.
// Unsafe here: the SIOCETHTOOL ioctl (the ethtool tool is not assumed installed) and its socket.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of the union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool_value(sock: &OwnedFd, dev: &str, cmd: u32, data: u32) -> Result<u32> {
    if dev.len() >= libc::IFNAMSIZ {
        bail!("interface name {dev:?} too long");
    }
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: (&mut value as *mut EthtoolValue).cast(), _pad: [0; 16] };
    for (dst, src) in req.name.iter_mut().zip(dev.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq whose data pointer refers to `value`, both alive for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("SIOCETHTOOL {cmd:#x} on {dev}"));
    }
    Ok(value.data)
}

fn control_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the fd is owned immediately.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket for ethtool ioctl");
    }
    // SAFETY: fd is a freshly created, valid descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Turns transmit checksum offload off (frames carry full checksums, as on a real wire) and GRO
/// on (a veth end with GRO has NAPI, so it accepts frames redirected to it by XDP).
pub fn make_wire_like(dev: &str) -> Result<()> {
    set_tx_checksum(dev, false)?;
    set_gro(dev, true)
}

/// Transmit checksum offload on or off.
pub fn set_tx_checksum(dev: &str, on: bool) -> Result<()> {
    ethtool_value(&control_socket()?, dev, ETHTOOL_STXCSUM, u32::from(on)).map(drop)
}

/// GRO on or off: a veth end with GRO has NAPI (so its peer can take XDP frames).
pub fn set_gro(dev: &str, on: bool) -> Result<()> {
    ethtool_value(&control_socket()?, dev, ETHTOOL_SGRO, u32::from(on)).map(drop)
}

/// (tx checksum offload on, GRO on) for `dev`.
pub fn offloads(dev: &str) -> Result<(bool, bool)> {
    let sock = control_socket()?;
    let tx = ethtool_value(&sock, dev, ETHTOOL_GTXCSUM, 0)? != 0;
    let gro = ethtool_value(&sock, dev, ETHTOOL_GGRO, 0)? != 0;
    Ok((tx, gro))
}
