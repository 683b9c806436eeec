//! Frames built field by field, with every checksum computed from scratch by a reference
//! implementation written here, independent of the program's incremental arithmetic.

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// One TCP segment in an Ethernet frame. Ports are in host order.
#[derive(Clone, Debug)]
pub struct Segment {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub vlan: Option<u16>,
    pub addrs: Addrs,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Raw option bytes, a multiple of 4 long.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

/// RFC 1071, the plain way: 32-bit accumulator, carries folded at the end.
pub fn reference_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let high = u32::from(pair[0]) << 8;
        let low = pair.get(1).copied().map_or(0, u32::from);
        sum += high | low;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

impl Segment {
    pub fn tcp_header_len(&self) -> usize {
        20 + self.options.len()
    }

    fn tcp_bytes(&self) -> Vec<u8> {
        assert_eq!(self.options.len() % 4, 0, "options must be padded to 32 bits");
        assert!(self.options.len() <= 40, "at most 40 option bytes");
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&self.sport.to_be_bytes());
        tcp.extend_from_slice(&self.dport.to_be_bytes());
        tcp.extend_from_slice(&self.seq.to_be_bytes());
        tcp.extend_from_slice(&self.ack.to_be_bytes());
        tcp.push(((self.tcp_header_len() / 4) as u8) << 4);
        tcp.push(self.flags);
        tcp.extend_from_slice(&self.window.to_be_bytes());
        tcp.extend_from_slice(&[0, 0]); // checksum
        tcp.extend_from_slice(&[0, 0]); // urgent pointer
        tcp.extend_from_slice(&self.options);
        tcp.extend_from_slice(&self.payload);
        tcp
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut tcp = self.tcp_bytes();
        let mut frame = Vec::new();
        frame.extend_from_slice(&self.eth_dst);
        frame.extend_from_slice(&self.eth_src);
        let ethertype = match self.addrs {
            Addrs::V4(..) => ETH_P_IP,
            Addrs::V6(..) => ETH_P_IPV6,
        };
        if let Some(tci) = self.vlan {
            frame.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        let mut pseudo = Vec::new();
        match self.addrs {
            Addrs::V4(src, dst) => {
                let mut ip = vec![0x45, 0x00];
                ip.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 6, 0, 0]);
                ip.extend_from_slice(&src);
                ip.extend_from_slice(&dst);
                let check = reference_checksum(&ip);
                ip[10..12].copy_from_slice(&check.to_be_bytes());
                frame.extend_from_slice(&ip);
                pseudo.extend_from_slice(&src);
                pseudo.extend_from_slice(&dst);
                pseudo.extend_from_slice(&[0, 6]);
                pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            }
            Addrs::V6(src, dst) => {
                frame.extend_from_slice(&[0x60, 0, 0, 0]);
                frame.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
                frame.extend_from_slice(&[6, 64]);
                frame.extend_from_slice(&src);
                frame.extend_from_slice(&dst);
                pseudo.extend_from_slice(&src);
                pseudo.extend_from_slice(&dst);
                pseudo.extend_from_slice(&(tcp.len() as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 6]);
            }
        }
        pseudo.extend_from_slice(&tcp);
        let check = reference_checksum(&pseudo);
        tcp[16..18].copy_from_slice(&check.to_be_bytes());
        frame.extend_from_slice(&tcp);
        frame
    }
}

/// Timestamp option (kind 8, length 10).
pub fn timestamp(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut option = vec![8, 10];
    option.extend_from_slice(&tsval.to_be_bytes());
    option.extend_from_slice(&tsecr.to_be_bytes());
    option
}

/// SACK option (kind 5) with its blocks.
pub fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut option = vec![5, (2 + 8 * blocks.len()) as u8];
    for (left, right) in blocks {
        option.extend_from_slice(&left.to_be_bytes());
        option.extend_from_slice(&right.to_be_bytes());
    }
    option
}

/// Concatenates options and pads with EOL to a multiple of 4.
pub fn options(parts: &[&[u8]]) -> Vec<u8> {
    let mut all: Vec<u8> = parts.concat();
    while !all.len().is_multiple_of(4) {
        all.push(0);
    }
    all
}

/// Byte-by-byte comparison with a readable report of where two frames differ.
pub fn assert_frame_eq(actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    let mut report = format!("frames differ (actual {} bytes, expected {} bytes)\n", actual.len(), expected.len());
    for i in 0..actual.len().max(expected.len()) {
        let a = actual.get(i).copied();
        let e = expected.get(i).copied();
        if a != e {
            report += &format!("  byte {i:3}: actual {a:02x?} expected {e:02x?}\n");
        }
    }
    panic!("{report}");
}
