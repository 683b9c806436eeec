//! The relays over loopback sockets: byte-identical both ways, half-closes, a splice relay
//! stopped and resumed, many short connections sharing the pools.
use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{relay, RelayMode, SpliceRelay};

const MIB: usize = 1 << 20;

/// Deterministic bytes that differ from one offset (and seed) to the next.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// (client, the load balancer's client-side socket, its server-side socket, server).
async fn sockets() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(front.local_addr().unwrap()).await.unwrap();
    let (lb_client, _) = front.accept().await.unwrap();
    let lb_server = TcpStream::connect(back.local_addr().unwrap()).await.unwrap();
    let (server, _) = back.accept().await.unwrap();
    (client, lb_client, lb_server, server)
}

/// Sends `out` then shuts the write half, while reading everything until the peer's end.
async fn exchange(mut stream: TcpStream, out: Vec<u8>) -> Vec<u8> {
    let (mut rd, mut wr) = stream.split();
    let send = async {
        wr.write_all(&out).await.unwrap();
        wr.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let receive = rd.read_to_end(&mut got);
    let ((), read) = tokio::join!(send, receive);
    read.unwrap();
    got
}

async fn both_ways(mode: RelayMode, up_len: usize, down_len: usize) {
    let (client, lb_client, lb_server, server) = sockets().await;
    let (up, down) = (pattern(1, up_len), pattern(2, down_len));
    let relayed = tokio::spawn(relay(lb_client, lb_server, mode));
    let (at_server, at_client) = tokio::join!(exchange(server, down.clone()), exchange(client, up.clone()));
    let (moved, used) = tokio::time::timeout(Duration::from_secs(30), relayed).await.unwrap().unwrap().unwrap();
    assert!(at_server == up, "{mode:?}: the server got {} bytes, not the client's {}", at_server.len(), up.len());
    assert!(at_client == down, "{mode:?}: the client got {} bytes, not the server's {}", at_client.len(), down.len());
    assert_eq!((moved.to_server, moved.to_client), (up_len as u64, down_len as u64));
    assert_eq!(used, if mode == RelayMode::Copy { RelayMode::Copy } else { RelayMode::Splice });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_relays_both_ways_byte_for_byte() {
    both_ways(RelayMode::Splice, 24 * MIB + 17, 9 * MIB + 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_relays_both_ways_byte_for_byte() {
    both_ways(RelayMode::Copy, 24 * MIB + 17, 9 * MIB + 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_directions_end_cleanly() {
    for mode in [RelayMode::Splice, RelayMode::Copy] {
        both_ways(mode, 0, 0).await;
        both_ways(mode, 0, MIB).await;
    }
}

/// The client finishes sending first; the server reads to the end, then answers at length:
/// the answer must still arrive whole through the half-closed connection.
async fn half_close(mode: RelayMode) {
    let (mut client, lb_client, lb_server, mut server) = sockets().await;
    let relayed = tokio::spawn(relay(lb_client, lb_server, mode));
    let request = pattern(3, MIB + 5);
    client.write_all(&request).await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert!(got == request, "{mode:?}: the request arrived damaged");
    let answer = pattern(4, 8 * MIB + 1);
    let serve = async {
        server.write_all(&answer).await.unwrap();
        server.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let ((), read) = tokio::join!(serve, client.read_to_end(&mut back));
    read.unwrap();
    assert!(back == answer, "{mode:?}: the answer after the half-close arrived damaged");
    tokio::time::timeout(Duration::from_secs(10), relayed).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_carries_an_answer_after_the_clients_half_close() {
    half_close(RelayMode::Splice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_carries_an_answer_after_the_clients_half_close() {
    half_close(RelayMode::Copy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_short_connections_share_the_pools() {
    for mode in [RelayMode::Splice, RelayMode::Copy] {
        let runs: Vec<_> = (0..64).map(|i| tokio::spawn(both_ways(mode, 1000 + i, 5000 + 7 * i))).collect();
        for run in runs {
            run.await.unwrap();
        }
    }
}

/// What the hand-off relies on: stopped, the relay leaves no byte in a pipe (everything it
/// read is written), and resumed, it carries on where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_splice_relay_holds_nothing_and_resumes() {
    let (client, lb_client, lb_server, server) = sockets().await;
    let (up, down) = (pattern(5, 32 * MIB), pattern(6, 32 * MIB));
    let peers = tokio::spawn(async move { tokio::join!(exchange(server, down), exchange(client, up)) });
    let mut relay = SpliceRelay::new(&lb_client, &lb_server).unwrap();
    let mut stops = 0;
    while !relay.finished() {
        let mut progress = relay.progress();
        let target = *progress.borrow() + 3 * MIB as u64;
        relay
            .run_until(async move {
                progress.wait_for(|moved| *moved >= target).await.ok();
            })
            .await
            .unwrap();
        assert!(relay.pipes_empty(), "stopped with bytes in a pipe");
        stops += 1;
    }
    let (at_server, at_client) = peers.await.unwrap();
    assert!(at_server == pattern(5, 32 * MIB) && at_client == pattern(6, 32 * MIB), "damaged after {stops} stops");
    assert!(stops > 5, "only {stops} stops: the test proved little");
}

/// Bytes reach the meter while the connection is still open, under the relay's own path.
async fn meters_bytes_as_they_move(mode: RelayMode) {
    use crate::telemetry::counters::{ByteCounters, Meter, Path};
    let (frontend, server_bytes): (&'static ByteCounters, &'static ByteCounters) = (Box::leak(Box::default()), Box::leak(Box::default()));
    let path = if mode == RelayMode::Copy { Path::Copy } else { Path::Splice };
    let (mut client, lb_client, lb_server, mut server) = sockets().await;
    let relayed = tokio::spawn(super::relay_metered(lb_client, lb_server, mode, Meter::new(frontend, server_bytes)));
    let request = pattern(5, MIB + 7);
    client.write_all(&request).await.unwrap();
    let mut got = vec![0; request.len()];
    server.read_exact(&mut got).await.unwrap();
    server.write_all(b"answer").await.unwrap();
    let mut answer = [0; 6];
    client.read_exact(&mut answer).await.unwrap();
    // Both still open: the relay has not returned, yet the meter knows (the splice relay
    // counts right after the system calls that moved the bytes: allow it a moment).
    let expected = (request.len() as u64, 6);
    for counters in [frontend, server_bytes] {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while (counters.to_server(path), counters.to_client(path)) != expected && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!((counters.to_server(path), counters.to_client(path)), expected, "{mode:?}");
    }
    assert!(!relayed.is_finished());
    drop((client, server));
    let (moved, _) = tokio::time::timeout(Duration::from_secs(10), relayed).await.unwrap().unwrap().unwrap();
    assert_eq!((frontend.to_server(path), frontend.to_client(path)), (moved.to_server, moved.to_client));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_relay_meters_bytes_as_they_move() {
    meters_bytes_as_they_move(RelayMode::Splice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_relay_meters_bytes_as_they_move() {
    meters_bytes_as_they_move(RelayMode::Copy).await;
}

/// A copying-first relay: a short exchange never touches a pipe, a long one switches to
/// splice past the mark without losing or reordering a byte, stops clean in either phase,
/// and the meter counts each batch under the path that carried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copying_first_relay_switches_to_splice_past_its_mark() {
    use crate::telemetry::counters::{ByteCounters, Meter, Path};
    const MARK: u64 = 1 << 16;
    for (len, stop_every) in [(3000, 1000), (16 * MIB, 3 * MIB)] {
        let counters: &'static ByteCounters = Box::leak(Box::default());
        let (client, lb_client, lb_server, server) = sockets().await;
        let (up, down) = (pattern(7, len), pattern(8, len / 2));
        let peers = tokio::spawn(async move { tokio::join!(exchange(server, down), exchange(client, up)) });
        let mut relay = SpliceRelay::copying_first(&lb_client, &lb_server, Meter::new(counters, Box::leak(Box::default())), MARK);
        while !relay.finished() {
            let mut progress = relay.progress();
            let target = *progress.borrow() + stop_every as u64;
            relay.run_until(async move { progress.wait_for(|moved| *moved >= target).await.map_or((), |_| ()) }).await.unwrap();
            assert!(relay.pipes_empty(), "{len}: stopped with bytes in flight");
        }
        let (at_server, at_client) = peers.await.unwrap();
        assert!(at_server == pattern(7, len) && at_client == pattern(8, len / 2), "{len}: damaged");
        let (moved, copied) = (relay.moved(), relay.copied());
        assert_eq!((moved.to_server, moved.to_client), (len as u64, len as u64 / 2));
        let spliced = (moved.to_server - copied.to_server, moved.to_client - copied.to_client);
        assert_eq!((counters.to_server(Path::Copy), counters.to_client(Path::Copy)), (copied.to_server, copied.to_client), "{len}");
        assert_eq!((counters.to_server(Path::Splice), counters.to_client(Path::Splice)), spliced, "{len}");
        if (len as u64) * 3 / 2 < MARK {
            assert!(!relay.spliced_any(), "{len}: a short exchange was spliced");
        } else {
            assert!(relay.spliced_any(), "{len}: never switched to splice");
            // A batch read before the mark may carry the copy past it, by one buffer at most.
            assert!(copied.to_server + copied.to_client < MARK + 2 * super::copy::BUFFER_SIZE as u64, "{copied:?}");
        }
    }
}
