//! The incremental reader: bytes from the client in, a decision out.
//!
//! Each byte fed is looked at once. Record headers and the handshake header are gathered in
//! small arrays; the hello body is parsed in place from the caller's slice when it arrives
//! whole in one record and one feed (the common case, no allocation), and otherwise copied
//! once into a buffer (which grows with the bytes received) and parsed when the last byte lands.

use super::client_hello::ClientHello;
use super::error::HelloError;
use super::parse::{self, HANDSHAKE_HEADER_LEN};
use super::record::{self, Header, RECORD_HEADER_LEN};

/// Largest ClientHello body accepted by [`HelloReader::new`]: 64 KiB.
pub const MAX_HELLO_LEN: usize = 64 * 1024;
const HANDSHAKE_TYPE_CLIENT_HELLO: u8 = 1;
/// Most records a hello may span: a 64 KiB hello in 512-byte fragments (the smallest
/// max_fragment_length) needs 129. The cap bounds the stream read before a decision to
/// `max_len + 4 + 5 * MAX_RECORDS` bytes, record headers included.
pub const MAX_RECORDS: usize = 1024;
/// First allocation for a hello that arrives in pieces: enough for browser hellos.
const INITIAL_BODY_CAPACITY: usize = 4096;

/// What the bytes fed so far say.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Not decided yet: feed more bytes.
    NeedMore,
    /// The stream does not start with a TLS handshake record: treat it as plain TCP.
    NotTls,
    /// A ClientHello was read whole.
    Complete(ClientHello),
}

/// What one feed decided about the stream; a complete hello goes to an `out` parameter.
enum Step {
    /// TLS so far (the hello may be complete).
    Tls,
    NotTls,
}

enum State {
    Reading,
    NotTls,
    Complete,
    Failed(HelloError),
}

/// Reads a ClientHello from the first bytes of a TCP stream, fed in any segmentation.
///
/// The reader only looks; the caller keeps (and later forwards) the bytes. Once it returns
/// [`Progress::NotTls`] it keeps saying so; once it fails, it repeats the error; after
/// [`Progress::Complete`] further feeds are refused with [`HelloError::AlreadyComplete`].
pub struct HelloReader {
    state: State,
    max_len: usize,
    /// Stream offset of the next byte to be fed.
    offset: usize,
    /// Records whose header has been read whole.
    records: usize,
    record_start: usize,
    record_header: [u8; RECORD_HEADER_LEN],
    record_header_len: usize,
    /// Payload bytes of the current record not yet read.
    record_left: usize,
    handshake_header: [u8; HANDSHAKE_HEADER_LEN],
    handshake_header_len: usize,
    /// Announced body length, valid once the handshake header is whole.
    body_len: usize,
    /// Reassembled body, used only when it does not arrive in one piece.
    body: Vec<u8>,
}

impl std::fmt::Debug for HelloReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Reading => "reading",
            State::NotTls => "not TLS",
            State::Complete => "complete",
            State::Failed(_) => "failed",
        };
        f.debug_struct("HelloReader")
            .field("state", &state)
            .field("bytes_read", &self.offset)
            .field("records", &self.records)
            .field("hello_len", &(self.handshake_header_len == HANDSHAKE_HEADER_LEN).then_some(self.body_len))
            .finish_non_exhaustive()
    }
}

impl Default for HelloReader {
    fn default() -> Self {
        Self::new()
    }
}

impl HelloReader {
    /// A reader accepting hellos up to [`MAX_HELLO_LEN`].
    pub fn new() -> Self {
        Self::with_max_len(MAX_HELLO_LEN)
    }

    /// A reader accepting hello bodies up to `max_len` bytes (the handshake length field
    /// cannot say more than 2^24 - 1 anyway).
    pub fn with_max_len(max_len: usize) -> Self {
        Self {
            state: State::Reading,
            max_len,
            offset: 0,
            records: 0,
            record_start: 0,
            record_header: [0; RECORD_HEADER_LEN],
            record_header_len: 0,
            record_left: 0,
            handshake_header: [0; HANDSHAKE_HEADER_LEN],
            handshake_header_len: 0,
            body_len: 0,
            body: Vec::new(),
        }
    }

    /// Stream bytes consumed so far (all bytes fed, until a decision).
    pub fn bytes_read(&self) -> usize {
        self.offset
    }

    /// Feed bytes newly received from the client (in order, appended to earlier ones).
    ///
    /// # Errors
    /// A [`HelloError`] when the stream starts as TLS but is not an acceptable ClientHello;
    /// the reader then keeps returning that error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, HelloError> {
        match &self.state {
            State::Reading => {}
            State::NotTls => return Ok(Progress::NotTls),
            State::Complete => return Err(HelloError::AlreadyComplete),
            State::Failed(e) => return Err(e.clone()),
        }
        // The hello is built in place when its last byte lands, and moved once, into the
        // answer (each arm builds its answer where it is returned: no large copies).
        let mut hello = None;
        match self.advance(bytes, &mut hello) {
            Err(e) => {
                self.end(State::Failed(e.clone()));
                Err(e)
            }
            Ok(Step::NotTls) => {
                self.end(State::NotTls);
                Ok(Progress::NotTls)
            }
            Ok(Step::Tls) => match hello {
                Some(hello) => {
                    self.end(State::Complete);
                    Ok(Progress::Complete(hello))
                }
                None => Ok(Progress::NeedMore),
            },
        }
    }

    fn end(&mut self, state: State) {
        self.state = state;
        self.body = Vec::new();
    }

    fn advance(&mut self, mut input: &[u8], out: &mut Option<ClientHello>) -> Result<Step, HelloError> {
        while !input.is_empty() {
            if self.record_left == 0 {
                input = match self.record_header(input)? {
                    (Header::NotTls, _) => return Ok(Step::NotTls),
                    (_, rest) => rest,
                };
                continue;
            }
            let n = self.record_left.min(input.len());
            let (payload, rest) = input.split_at(n);
            input = rest;
            self.record_left -= n;
            if self.handshake(payload, out)? {
                break; // bytes after the hello are not ours to read
            }
        }
        Ok(Step::Tls)
    }

    /// Gathers record header bytes from `input`; returns the verdict and the rest of `input`.
    fn record_header<'a>(&mut self, input: &'a [u8]) -> Result<(Header, &'a [u8]), HelloError> {
        let have = self.record_header_len;
        if have == 0 {
            self.record_start = self.offset;
        }
        let (prefix, rest) = match (have, input.split_first_chunk::<RECORD_HEADER_LEN>()) {
            // The whole header is in this feed: judge it where it lies.
            (0, Some((head, rest))) => (&head[..], rest),
            _ => {
                let n = (RECORD_HEADER_LEN - have).min(input.len());
                let (head, rest) = input.split_at(n);
                if let Some(dst) = self.record_header.get_mut(have..have + n) {
                    dst.copy_from_slice(head);
                }
                (self.record_header.get(..have + n).unwrap_or_default(), rest)
            }
        };
        let read = prefix.len() - have;
        let header = record::judge(prefix, self.records == 0, self.record_start)?;
        self.offset += read;
        self.record_header_len = have + read;
        if let Header::Handshake(len) = header {
            if self.records == MAX_RECORDS {
                let offset = self.record_start;
                return Err(HelloError::TooManyRecords { max: MAX_RECORDS, offset });
            }
            self.record_left = len;
            self.record_header_len = 0;
            self.records += 1;
        }
        Ok((header, rest))
    }

    /// Takes handshake bytes of one record; once the hello's last byte is in, parses it into
    /// `out` and returns true.
    fn handshake(&mut self, mut payload: &[u8], out: &mut Option<ClientHello>) -> Result<bool, HelloError> {
        if self.handshake_header_len < HANDSHAKE_HEADER_LEN {
            let have = self.handshake_header_len;
            let n = (HANDSHAKE_HEADER_LEN - have).min(payload.len());
            let (head, rest) = payload.split_at(n);
            match (have, <[u8; HANDSHAKE_HEADER_LEN]>::try_from(head)) {
                (0, Ok(whole)) => self.handshake_header = whole,
                _ => {
                    if let Some(dst) = self.handshake_header.get_mut(have..have + n) {
                        dst.copy_from_slice(head);
                    }
                }
            }
            self.handshake_header_len += n;
            self.offset += n;
            payload = rest;
            let [msg_type, len @ ..] = self.handshake_header;
            if have + n >= 1 && msg_type != HANDSHAKE_TYPE_CLIENT_HELLO {
                return Err(HelloError::NotClientHello { msg_type });
            }
            if self.handshake_header_len < HANDSHAKE_HEADER_LEN {
                return Ok(false);
            }
            let [a, b, c] = len;
            self.body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if self.body_len > self.max_len {
                return Err(HelloError::TooLarge { len: self.body_len, max: self.max_len });
            }
        }
        let need = self.body_len - self.body.len();
        if self.body.is_empty() {
            if let Some(body) = payload.get(..need) {
                // Fast path: the whole body is in this slice; parse it where it lies.
                self.offset += need;
                return self.finish(body, out);
            }
            if payload.is_empty() {
                return Ok(false); // the body may yet come whole in the next feed
            }
            // Capacity follows the bytes received, not the length announced: a client that
            // announces 64 KiB and sends one byte costs a few KiB, not 64.
            self.body.reserve(self.body_len.min(INITIAL_BODY_CAPACITY));
        }
        let n = need.min(payload.len());
        self.body.extend_from_slice(payload.get(..n).unwrap_or_default());
        self.offset += n;
        if self.body.len() < self.body_len {
            return Ok(false);
        }
        let body = std::mem::take(&mut self.body);
        self.finish(&body, out)
    }

    fn finish(&self, body: &[u8], out: &mut Option<ClientHello>) -> Result<bool, HelloError> {
        let hello = out.insert(ClientHello::default());
        parse::client_hello(body, hello)?;
        hello.wire_len = self.offset;
        hello.records = self.records;
        Ok(true)
    }
}
