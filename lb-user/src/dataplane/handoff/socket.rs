//! What the kernel knows about one of our TCP sockets, and the TCP_REPAIR switch.
//!
//! Every function here is a single getsockopt/setsockopt/ioctl on a descriptor the caller
//! owns; this is the kernel boundary of the hand-off, so the unsafe blocks live here.
// Unsafe here: the TCP_REPAIR getsockopt/setsockopt/ioctl calls of the hand-off: nix wraps none of them.
#![allow(unsafe_code)]
use std::{
    io,
    mem::{size_of, MaybeUninit},
    os::fd::{AsRawFd, BorrowedFd},
};

// tcp_info.tcpi_options bits (include/uapi/linux/tcp.h).
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
const TCPI_OPT_ECN: u8 = 8;
const TCPI_OPT_SYN_DATA: u8 = 32;
const TCPI_OPT_USEC_TS: u8 = 64;
const TCPI_OPT_TFO_CHILD: u8 = 128;
const TCP_ESTABLISHED: u8 = 1;

// What is read here feeds the splice arithmetic of lb-core, in its types.
pub use lb_core::splice::{Negotiated, Sequences};

// TCP_REPAIR_QUEUE selectors.
const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
const SIOCINQ: libc::c_ulong = libc::FIONREAD as libc::c_ulong;
const SIOCOUTQ: libc::c_ulong = libc::TIOCOUTQ as libc::c_ulong;

pub fn negotiated(fd: BorrowedFd<'_>) -> io::Result<Negotiated> {
    let info: libc::tcp_info = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO)?;
    let options = info.tcpi_options;
    let unsupported = if options & TCPI_OPT_ECN != 0 {
        Some("ecn")
    } else if options & (TCPI_OPT_SYN_DATA | TCPI_OPT_TFO_CHILD) != 0 {
        Some("fast open")
    } else if options & TCPI_OPT_USEC_TS != 0 {
        Some("usec timestamps")
    } else {
        None
    };
    let wscale = options & TCPI_OPT_WSCALE != 0;
    // The C struct packs tcpi_snd_wscale:4 then tcpi_rcv_wscale:4, low bits first.
    let shifts = info.tcpi_snd_rcv_wscale;
    Ok(Negotiated {
        established: info.tcpi_state == TCP_ESTABLISHED,
        timestamps: options & TCPI_OPT_TIMESTAMPS != 0,
        sack: options & TCPI_OPT_SACK != 0,
        wscale,
        peer_wscale: if wscale { shifts & 0x0F } else { 0 },
        our_wscale: if wscale { shifts >> 4 } else { 0 },
        unsupported,
        send_mss: info.tcpi_snd_mss,
        advertised_mss: info.tcpi_advmss,
    })
}

/// Bytes received and not yet read, bytes sent and not yet acknowledged (or not yet sent).
pub fn queues(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    Ok((ioctl_int(fd, SIOCINQ)?, ioctl_int(fd, SIOCOUTQ)?))
}

/// Puts the socket in repair mode: from now on closing it sends neither FIN nor RST.
pub fn repair_on(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, 1)
}

/// Leaves repair mode (the hand-off was abandoned; the socket carries on as before), with a
/// window probe to the peer.
pub fn repair_off(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, 0)
}

/// Leaves repair mode without the window probe that `TCP_REPAIR_OFF` sends (linux/tcp.h).
const TCP_REPAIR_OFF_NO_WP: libc::c_int = -1;

/// The socket's sequence numbers, read in repair mode entered and left at once, silently:
/// the socket carries on as before (nothing it sends or receives waits on it).
pub fn peek_sequences(fd: BorrowedFd<'_>) -> io::Result<Sequences> {
    repair_on(fd)?;
    let read = sequences(fd);
    // Left whatever the read gave: a socket stuck in repair mode would go silent.
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, TCP_REPAIR_OFF_NO_WP).or_else(|_| repair_off(fd))?;
    read
}

/// Sends the peer a window probe (our oldest unacknowledged sequence number minus one, no
/// data), which it answers at once with an ACK of everything it received: leaving repair
/// mode with `TCP_REPAIR_OFF` sends one on an established socket.
pub fn probe_peer(fd: BorrowedFd<'_>) -> io::Result<()> {
    repair_on(fd)?;
    repair_off(fd)
}

/// `TCP_REPAIR_WINDOW` (linux/tcp.h; the libc crate lacks it on Linux).
const TCP_REPAIR_WINDOW: libc::c_int = 29;

/// `struct tcp_repair_window` (linux/tcp.h): the kernel's layout.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)]
struct RepairWindow {
    snd_wl1: u32,
    snd_wnd: u32,
    max_window: u32,
    rcv_wnd: u32,
    rcv_wup: u32,
}

/// Refused while the socket holds bytes not yet sent: with the send queue selected in repair
/// mode, an ACK that lands meanwhile (softirq on another CPU, or the backlog at the end of
/// our own setsockopt) makes tcp_write_xmit take every unsent byte as sent, without sending
/// it ("Skip network transmission"). Those bytes then reach the peer one retransmission
/// timeout at a time. Only our own writes add unsent bytes, so the check cannot go stale
/// before the queue is selected.
pub fn sequences(fd: BorrowedFd<'_>) -> io::Result<Sequences> {
    let info: libc::tcp_info = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO)?;
    if info.tcpi_notsent_bytes > 0 {
        return Err(io::Error::new(io::ErrorKind::WouldBlock, format!("{} bytes not yet sent: the send queue is not safe to select", info.tcpi_notsent_bytes)));
    }
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)?;
    let snd_nxt: libc::c_uint = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_QUEUE_SEQ)?;
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)?;
    let rcv_nxt: libc::c_uint = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_QUEUE_SEQ)?;
    let tsval: libc::c_uint = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_TIMESTAMP)?;
    let window: RepairWindow = getsockopt(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW)?;
    // The kernel keeps the window it last advertised as its start (`rcv_wup`, rcv_nxt at
    // the time) and size: what is left of it is the right edge minus rcv_nxt.
    let offered_window = window.rcv_wup.wrapping_add(window.rcv_wnd).wrapping_sub(rcv_nxt);
    let offered_window = if (offered_window as i32) < 0 { 0 } else { offered_window };
    Ok(Sequences { snd_nxt, rcv_nxt, tsval, peer_window: window.snd_wnd, offered_window })
}

/// The socket's smoothed round-trip time.
pub fn rtt(fd: BorrowedFd<'_>) -> io::Result<std::time::Duration> {
    let info: libc::tcp_info = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO)?;
    Ok(std::time::Duration::from_micros(u64::from(info.tcpi_rtt)))
}

/// Sends the ACK the socket owes now instead of delaying it (up to 40 ms), and acknowledges
/// at once for a while after (the kernel turns quick acknowledgement off again by itself).
pub fn ack_now(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1)
}

/// Caps the MSS this socket announces; only effective before connect().
pub fn clamp_mss(fd: BorrowedFd<'_>, mss: u32) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, mss as libc::c_int)
}

fn setsockopt(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: fd is a live descriptor (BorrowedFd); the kernel reads exactly
    // size_of::<c_int>() bytes from &value, which outlives the call.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), size_of::<libc::c_int>() as libc::socklen_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an option whose value is a plain C struct or integer `T` (every bit pattern valid).
fn getsockopt<T: Copy>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: fd is live; the kernel writes at most `len` bytes into `value`, which has room
    // for size_of::<T>() bytes; value starts zeroed, so a shorter answer (older kernels
    // fill less of tcp_info) leaves the rest zero, a valid value for the integer-only T used here.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, value.as_mut_ptr().cast(), &raw mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised and then (partly) written by the kernel: fully initialised.
    Ok(unsafe { value.assume_init() })
}

fn ioctl_int(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCINQ and SIOCOUTQ write one c_int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &raw mut value) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.max(0) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        os::fd::AsFd,
    };

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn loopback_connection_negotiates_timestamps_sack_and_scaling() {
        let (client, _server) = pair();
        let n = negotiated(client.as_fd()).unwrap();
        assert!(n.established && n.timestamps && n.sack && n.wscale, "{n:?}");
        assert!(n.send_mss > 0);
        assert_eq!(n.unsupported, None);
    }

    #[test]
    fn queues_count_unread_bytes() {
        let (mut client, server) = pair();
        client.write_all(b"hello").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while queues(server.as_fd()).unwrap().0 < 5 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(queues(server.as_fd()).unwrap().0, 5);
    }

    /// Needs CAP_NET_ADMIN (the tests run as root): the sequence numbers of both ends agree.
    #[test]
    fn repair_mode_reads_matching_sequence_numbers() {
        let (mut client, mut server) = pair();
        client.write_all(b"abc").unwrap();
        let mut buf = [0u8; 3];
        server.read_exact(&mut buf).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        repair_on(client.as_fd()).unwrap();
        repair_on(server.as_fd()).unwrap();
        let c = sequences(client.as_fd()).unwrap();
        let s = sequences(server.as_fd()).unwrap();
        assert_eq!(c.snd_nxt, s.rcv_nxt);
        assert_eq!(s.snd_nxt, c.rcv_nxt);
        repair_off(client.as_fd()).unwrap();
        repair_off(server.as_fd()).unwrap();
        client.write_all(b"d").unwrap();
        server.read_exact(&mut buf[..1]).unwrap();
        assert_eq!(&buf[..1], b"d");
    }

    /// What a socket still offers is what its peer was last told: once the receiver's ACK
    /// of everything went out, the right edge it set less `rcv_nxt` equals the sender's
    /// send window. Read silently on both ends (no window probe).
    #[test]
    fn the_offered_window_is_the_peers_send_window() {
        let (mut client, mut server) = pair();
        client.write_all(&[7u8; 1000]).unwrap();
        let mut buf = [0u8; 1000];
        server.read_exact(&mut buf).unwrap();
        // The receiver's (delayed) ACK of the read bytes reaches the sender.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let offered = peek_sequences(server.as_fd()).unwrap().offered_window;
        let told = peek_sequences(client.as_fd()).unwrap().peer_window;
        assert!(offered > 0);
        assert_eq!(offered, told);
    }

    /// A pair whose client (non-blocking) has filled the server's small window: bytes wait
    /// unsent in the client's queue. Returns the bytes the client wrote.
    fn window_full() -> (TcpStream, TcpStream, usize) {
        let (mut client, server) = pair();
        socket2::SockRef::from(&server).set_recv_buffer_size(4096).unwrap();
        client.set_nonblocking(true).unwrap();
        let chunk = [5u8; 16 * 1024];
        let mut written = 0usize;
        while let Ok(n) = client.write(&chunk) {
            written += n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        (client, server, written)
    }

    /// The hazard `sequences` guards against, shown on the kernel itself: in repair mode
    /// with the send queue selected, an ACK that opens the peer's window makes the kernel
    /// take the unsent bytes as sent without sending them (tcp_write_xmit, "Skip network
    /// transmission"). They then reach the peer only by a retransmission timeout.
    #[test]
    fn selecting_the_send_queue_with_unsent_bytes_lets_the_kernel_swallow_them() {
        let (client, mut server, written) = window_full();
        let unsent = |s: &TcpStream| getsockopt::<libc::tcp_info>(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_INFO).unwrap().tcpi_notsent_bytes;
        assert!(unsent(&client) > 0, "the peer's window is full: bytes wait unsent");
        repair_on(client.as_fd()).unwrap();
        setsockopt(client.as_fd(), libc::IPPROTO_TCP, libc::TCP_REPAIR_QUEUE, TCP_SEND_QUEUE).unwrap();
        // The server reads: its window opens, and its window update reaches the client.
        let mut sink = vec![0u8; 1 << 20];
        let mut read = 0usize;
        server.set_read_timeout(Some(std::time::Duration::from_millis(100))).unwrap();
        while let Ok(n) = server.read(&mut sink) {
            if n == 0 {
                break;
            }
            read += n;
        }
        let swallowed = unsent(&client);
        setsockopt(client.as_fd(), libc::IPPROTO_TCP, libc::TCP_REPAIR, TCP_REPAIR_OFF_NO_WP).unwrap();
        assert_eq!(swallowed, 0, "unsent bytes taken as sent in repair mode (written {written}, read {read})");
        assert!(read < written, "the swallowed bytes did not arrive");
    }

    /// The guard: with unsent bytes the sequence numbers are refused, and the socket is
    /// out of repair mode again (a send into a repair-mode socket fails with EINVAL).
    #[test]
    fn sequences_are_refused_while_bytes_wait_unsent() {
        let (mut client, _server, _) = window_full();
        let refused = peek_sequences(client.as_fd()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock, "{refused}");
        assert_eq!(client.write(&[5u8; 1024]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
