//! Which devices can take the frames an XDP program redirects to them, as the kernel says in
//! each device's `xdp_features` (the `netdev` generic netlink family, Linux 6.3+).
//!
//! A frame redirected to a device without `NETDEV_XDP_ACT_NDO_XMIT` is dropped. A veth has it
//! only while its peer can take XDP frames: GRO on, or an XDP program of its own (either gives
//! the peer the NAPI the frames are queued for). Kernel defaults (GRO off) leave it out, and so
//! do other containers' or hosts' settings we do not control; bridges, VLANs and some NIC
//! drivers never have it. The daemon therefore lets XDP redirect only to devices that have it,
//! and follows the kernel's notifications (the `mgmt` multicast group), which come whenever a
//! device's features change (a peer turning GRO on or off, for instance).
use std::io;

use netlink_packet_core::{
    emit_u32, emit_u64, parse_u32, parse_u64, DecodeError, DefaultNla, Emitable, ErrorContext, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NlaBuffer,
    NlasIterator, Parseable, ParseableParametrized, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::{
    constants::GENL_ID_CTRL,
    ctrl::{
        nlas::{GenlCtrlAttrs, McastGrpAttrs},
        GenlCtrl, GenlCtrlCmd,
    },
    GenlFamily, GenlHeader, GenlMessage,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// include/uapi/linux/netdev.h.
const FAMILY: &str = "netdev";
const MGMT_GROUP: &str = "mgmt";
const CMD_DEV_GET: u8 = 1;
const CMD_DEV_ADD_NTF: u8 = 2;
const CMD_DEV_CHANGE_NTF: u8 = 4;
const A_DEV_IFINDEX: u16 = 1;
const A_DEV_XDP_FEATURES: u16 = 3;
const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

/// A device's XDP features, as reported by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFeatures {
    pub ifindex: u32,
    pub xdp: u64,
}

impl DeviceFeatures {
    /// The device accepts frames redirected to it by an XDP program (`ndo_xdp_xmit`).
    pub fn takes_redirects(self) -> bool {
        self.xdp & XDP_ACT_NDO_XMIT != 0
    }
}

/// One message of the netdev family: a command and the device attributes it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Netdev {
    cmd: u8,
    attrs: Vec<DevAttr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DevAttr {
    Ifindex(u32),
    XdpFeatures(u64),
    /// Attributes this module does not read (zero-copy segments, XSK and RX metadata features…).
    Other(DefaultNla),
}

impl Nla for DevAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Ifindex(_) => 4,
            Self::XdpFeatures(_) => 8,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Ifindex(_) => A_DEV_IFINDEX,
            Self::XdpFeatures(_) => A_DEV_XDP_FEATURES,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Ifindex(index) => emit_u32(buffer, *index).unwrap_or_default(),
            Self::XdpFeatures(features) => emit_u64(buffer, *features).unwrap_or_default(),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DevAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            A_DEV_IFINDEX => Self::Ifindex(parse_u32(value).context("netdev ifindex")?),
            A_DEV_XDP_FEATURES => Self::XdpFeatures(parse_u64(value).context("netdev xdp-features")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl GenlFamily for Netdev {
    fn family_name() -> &'static str {
        FAMILY
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for Netdev {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for Netdev {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf).map(|nla| nla.and_then(|nla| DevAttr::parse(&nla))).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { cmd: header.cmd, attrs })
    }
}

impl Netdev {
    /// The device this message describes, when it carries both its index and its features.
    fn device(&self) -> Option<DeviceFeatures> {
        let ifindex = self.attrs.iter().find_map(|a| if let DevAttr::Ifindex(i) = a { Some(*i) } else { None })?;
        let xdp = self.attrs.iter().find_map(|a| if let DevAttr::XdpFeatures(f) = a { Some(*f) } else { None })?;
        Some(DeviceFeatures { ifindex, xdp })
    }
}

/// A generic netlink socket that knows the netdev family's id.
pub struct XdpFeatures {
    socket: Socket,
    family: u16,
    mgmt_group: Option<u32>,
    sequence: u32,
}

impl XdpFeatures {
    /// None when the kernel has no netdev family (before Linux 6.3): no device's features are
    /// known then.
    pub fn open() -> io::Result<Option<Self>> {
        let mut socket = connected()?;
        let request = GenlCtrl { cmd: GenlCtrlCmd::GetFamily, nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY.to_string())] };
        let reply = match exchange(&mut socket, 1, request, GENL_ID_CTRL) {
            Ok(reply) => reply,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let family = reply.nlas.iter().find_map(|a| if let GenlCtrlAttrs::FamilyId(id) = a { Some(*id) } else { None });
        let Some(family) = family else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the netdev family's description has no id"));
        };
        let mgmt_group = reply.nlas.iter().find_map(|a| match a {
            GenlCtrlAttrs::McastGroups(groups) => groups.iter().find_map(|group| {
                let named = group.iter().any(|g| matches!(g, McastGrpAttrs::Name(n) if n == MGMT_GROUP));
                group.iter().find_map(|g| if let McastGrpAttrs::Id(id) = g { Some(*id) } else { None }).filter(|_| named)
            }),
            _ => None,
        });
        Ok(Some(Self { socket, family, mgmt_group, sequence: 1 }))
    }

    /// The XDP features of device `ifindex`.
    pub fn of(&mut self, ifindex: u32) -> io::Result<DeviceFeatures> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = Netdev { cmd: CMD_DEV_GET, attrs: vec![DevAttr::Ifindex(ifindex)] };
        let family = self.family;
        let reply = exchange(&mut self.socket, self.sequence, request, family)?;
        reply.device().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("the netdev reply for ifindex {ifindex} has no xdp-features")))
    }

    /// A socket that receives every change of a device's features from now on, each wait for
    /// them lasting at most `wait`; None when the kernel has no notification group for them.
    pub fn changes(&self, wait: std::time::Duration) -> io::Result<Option<Changes>> {
        let Some(group) = self.mgmt_group else { return Ok(None) };
        let socket = connected()?;
        socket.add_membership(group)?;
        socket2::SockRef::from(&socket).set_read_timeout(Some(wait))?;
        Ok(Some(Changes { socket, buffer: vec![0; NOTIFICATION_BUFFER] }))
    }
}

/// Room for one datagram of notifications (a few hundred bytes per device).
const NOTIFICATION_BUFFER: usize = 16 * 1024;

/// Notifications of the netdev family's `mgmt` group.
pub struct Changes {
    socket: Socket,
    buffer: Vec<u8>,
}

/// What one wait for notifications brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Devices added or whose features changed.
    Devices(Vec<DeviceFeatures>),
    /// The wait timed out.
    Nothing,
    /// The socket's buffer overflowed: notifications were lost, every device must be asked again.
    Lost,
}

impl Changes {
    /// Waits (at most the time given to [`XdpFeatures::changes`]) for notifications.
    pub fn wait(&mut self) -> io::Result<Change> {
        let len = match self.socket.recv(&mut &mut self.buffer[..], 0) {
            Ok(len) => len,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(Change::Nothing),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Change::Lost),
            Err(e) => return Err(e),
        };
        Ok(Change::Devices(notified(&self.buffer[..len.min(self.buffer.len())])))
    }
}

/// The devices described by the notifications in one datagram; anything else is skipped.
fn notified(datagram: &[u8]) -> Vec<DeviceFeatures> {
    messages::<Netdev>(datagram)
        .map_while(Result::ok)
        .filter_map(|message| match message.payload {
            NetlinkPayload::InnerMessage(genl) if matches!(genl.payload.cmd, CMD_DEV_ADD_NTF | CMD_DEV_CHANGE_NTF) => genl.payload.device(),
            _ => None,
        })
        .collect()
}

/// The netlink messages of one datagram, in order; one that does not parse ends it.
fn messages<F>(mut datagram: &[u8]) -> impl Iterator<Item = Result<NetlinkMessage<GenlMessage<F>>, DecodeError>> + '_
where
    F: GenlFamily + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    std::iter::from_fn(move || {
        if datagram.is_empty() {
            return None;
        }
        let parsed = NetlinkMessage::<GenlMessage<F>>::deserialize(datagram);
        match &parsed {
            // Messages are 4-byte aligned within a datagram.
            Ok(message) => datagram = datagram.get((message.header.length as usize).max(1).next_multiple_of(4)..).unwrap_or_default(),
            Err(_) => datagram = &[],
        }
        Some(parsed)
    })
}

fn connected() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends `request` to generic netlink family `family` and returns the kernel's answer (its ACK
/// read and checked too).
fn exchange<F>(socket: &mut Socket, sequence: u32, request: F, family: u16) -> io::Result<F>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    let mut genl = GenlMessage::from_payload(request);
    genl.set_resolved_family_id(family);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    message.finalize();
    let mut out = vec![0u8; message.buffer_len()];
    message.serialize(&mut out);
    socket.send(&out, 0)?;
    let mut answer = None;
    loop {
        let (datagram, _) = socket.recv_from_full()?;
        for message in messages::<F>(&datagram) {
            let message = message.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if message.header.sequence_number != sequence {
                continue;
            }
            match message.payload {
                NetlinkPayload::InnerMessage(genl) => answer = Some(genl.payload),
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                    // The ACK comes last.
                    None => return answer.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "generic netlink: ACK without an answer")),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(cmd: u8, attrs: Vec<DevAttr>) -> Vec<u8> {
        let mut genl = GenlMessage::from_payload(Netdev { cmd, attrs });
        genl.set_resolved_family_id(30);
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(genl));
        message.finalize();
        let mut out = vec![0u8; message.buffer_len()];
        message.serialize(&mut out);
        out
    }

    #[test]
    fn a_change_notification_names_the_device_and_its_features() {
        let mut datagram = notification(CMD_DEV_CHANGE_NTF, vec![DevAttr::Ifindex(7), DevAttr::XdpFeatures(0b111)]);
        datagram.extend(notification(
            CMD_DEV_ADD_NTF,
            vec![DevAttr::Ifindex(9), DevAttr::Other(DefaultNla::new(4, vec![1, 0, 0, 0])), DevAttr::XdpFeatures(0b011)],
        ));
        let devices = notified(&datagram);
        assert_eq!(devices, vec![DeviceFeatures { ifindex: 7, xdp: 0b111 }, DeviceFeatures { ifindex: 9, xdp: 0b011 }]);
        assert!(devices[0].takes_redirects());
        assert!(!devices[1].takes_redirects());
    }

    #[test]
    fn deletions_and_garbage_are_skipped() {
        let mut datagram = notification(3, vec![DevAttr::Ifindex(7), DevAttr::XdpFeatures(0b111)]);
        datagram.extend([0xff; 7]);
        assert_eq!(notified(&datagram), vec![]);
        assert_eq!(notified(&[1, 2, 3]), vec![]);
    }

    /// On this host's own loopback (root not needed): the family answers, and `lo` has no
    /// `ndo_xdp_xmit`. Fails on a kernel without the family (before 6.3), rather than pass
    /// without checking anything.
    #[test]
    fn loopback_takes_no_redirects() {
        let mut features = XdpFeatures::open().expect("generic netlink").expect("the netdev family (Linux 6.3+)");
        let lo = nix::net::if_::if_nametoindex("lo").unwrap();
        let found = features.of(lo).unwrap();
        assert_eq!(found.ifindex, lo);
        assert!(!found.takes_redirects(), "{found:?}");
    }
}
