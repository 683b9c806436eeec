//! Which kernel hooks serve an interface, and attaching them.
//!
//! Every interface gets the tc (clsact ingress) program: it sees skbs, so it handles GRO
//! and GSO aggregates, partial checksums and redirects into any device, veths included.
//! Interfaces backed by a device on a bus (NICs, virtio) also get the XDP program, which
//! splices before any skb exists and leaves the rest to tc. Virtual interfaces (veth,
//! bridges, VLANs, tunnels) get tc alone: XDP on a veth would turn off its peer's GSO (every
//! frame then crosses the pair one MTU at a time) and its redirects need NAPI on the peer,
//! which the peer's owner decides.
// Unsafe here: the SIOCETHTOOL ioctl that reads a device's bus info: no safe wrapper exists.
#![allow(unsafe_code)]
use std::{io, os::fd::AsRawFd};

use aya::programs::{tc::SchedClassifierLinkId, xdp::XdpLinkId, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("attaching the tc program to {iface} (ingress)")]
    Tc {
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("attaching XDP to {iface} in {mode} mode")]
    Xdp {
        iface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    /// Native mode failed (`native`), then generic mode (`source`).
    #[error("attaching XDP to {iface} (native failed: {native})")]
    XdpEither {
        iface: String,
        native: Box<ProgramError>,
        #[source]
        source: ProgramError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DriverInfoError {
    #[error("interface name {iface:?} is too long")]
    NameTooLong { iface: String },
    #[error("a socket for the ethtool ioctl")]
    Socket(#[source] io::Error),
    #[error("driver information of {iface}")]
    Ioctl {
        iface: String,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeChoice {
    /// Native (driver) mode if the interface supports it, else generic.
    Auto,
    Drv,
    Skb,
}

/// Where the XDP program runs beside tc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpUse {
    /// On interfaces backed by a device on a bus (NICs); virtual ones get tc alone.
    Auto,
    /// On every interface, veths included. Frames are then redirected into veths by XDP,
    /// which needs NAPI on each veth's peer (GRO on, or an XDP program there).
    Always,
    /// Nowhere: tc alone.
    Never,
}

impl XdpUse {
    /// Whether `iface` gets the XDP program, and may be a target of its redirects.
    pub fn on(self, iface: &str) -> bool {
        match self {
            XdpUse::Always => true,
            XdpUse::Never => false,
            XdpUse::Auto => has_bus(iface),
        }
    }
}

/// The hooks serving one interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub iface: String,
    /// In the daemon's network namespace (`lb-user stats` names the XDP egress devmap's
    /// entries by it: indexes mean nothing in another namespace).
    #[serde(default)]
    pub ifindex: u32,
    pub tc: bool,
    /// The XDP mode in use; None without XDP.
    pub xdp: Option<XdpModeChoice>,
}

pub fn attach_tc(program: &mut SchedClassifier, iface: &str, egress: bool) -> Result<SchedClassifierLinkId, AttachError> {
    program
        .attach(iface, if egress { TcAttachType::Egress } else { TcAttachType::Ingress })
        .map_err(|source| AttachError::Tc { iface: iface.to_string(), source })
}

pub fn attach_xdp(program: &mut Xdp, iface: &str, mode: XdpModeChoice) -> Result<(XdpModeChoice, XdpLinkId), AttachError> {
    let attempt = |program: &mut Xdp, m: XdpMode, name: &'static str| {
        program.attach(iface, m).map_err(|source| AttachError::Xdp { iface: iface.to_string(), mode: name, source })
    };
    match mode {
        XdpModeChoice::Drv => Ok((mode, attempt(program, XdpMode::Driver, "native")?)),
        XdpModeChoice::Skb => Ok((mode, attempt(program, XdpMode::Skb, "generic")?)),
        XdpModeChoice::Auto => match program.attach(iface, XdpMode::Driver) {
            Ok(link) => Ok((XdpModeChoice::Drv, link)),
            Err(native) => {
                tracing::info!(iface, error = %native, "native XDP unavailable, trying generic mode");
                let link = program.attach(iface, XdpMode::Skb).map_err(|source| AttachError::XdpEither {
                    iface: iface.to_string(),
                    native: Box::new(native),
                    source,
                })?;
                Ok((XdpModeChoice::Skb, link))
            }
        },
    }
}

/// Whether the interface's driver reports a bus address (ethtool's bus-info): NICs and
/// virtio devices do, virtual interfaces (veth, bridge, VLAN, tunnels) do not. Read through
/// the interface's own namespace (the ioctl), never /sys, which may show another one.
pub fn has_bus(iface: &str) -> bool {
    match driver_info(iface) {
        Ok(info) => !info.bus_info.is_empty(),
        Err(e) => {
            tracing::debug!(iface, error = %e, "no driver information: treated as virtual");
            false
        }
    }
}

pub struct DriverInfo {
    pub driver: String,
    pub bus_info: String,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

/// `struct ethtool_drvinfo` (include/uapi/linux/ethtool.h).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with the `ifr_data` member of the union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

pub fn driver_info(iface: &str) -> Result<DriverInfo, DriverInfoError> {
    if iface.len() >= libc::IFNAMSIZ {
        return Err(DriverInfoError::NameTooLong { iface: iface.to_string() });
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| std::net::UdpSocket::bind("[::1]:0")).map_err(DriverInfoError::Socket)?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: (&mut info as *mut EthtoolDrvinfo).cast(), _pad: [0; 16] };
    for (dst, src) in req.name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: req is a valid ifreq whose name is NUL-terminated (zero-filled, name shorter
    // than IFNAMSIZ) and whose data points to a live ethtool_drvinfo of the size the kernel
    // writes for ETHTOOL_GDRVINFO; both outlive the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfreqData) };
    if rc != 0 {
        return Err(DriverInfoError::Ioctl { iface: iface.to_string(), source: io::Error::last_os_error() });
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    Ok(DriverInfo { driver: text(&info.driver), bus_info: text(&info.bus_info) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_virtual() {
        assert!(!has_bus("lo"));
        assert_eq!(driver_info("lo").map(|i| i.bus_info).unwrap_or_default(), "");
    }

    #[test]
    fn an_unknown_interface_is_treated_as_virtual() {
        assert!(!has_bus("lb-no-such-if"));
        assert!(driver_info("an-interface-name-far-too-long").is_err());
    }

    #[test]
    fn explicit_choices_ignore_the_interface() {
        assert!(XdpUse::Always.on("lo"));
        assert!(!XdpUse::Never.on("lo"));
        assert!(!XdpUse::Auto.on("lo"));
    }
}
