//! The incremental reader: bytes from the client in, a decision out.
//!
//! Each byte fed is looked at once. Record headers and the handshake header are gathered in
//! small arrays; the hello body is parsed in place from the caller's slice when it arrives
//! whole in one record and one feed (the common case, no allocation), and otherwise copied
//! once into a buffer reserved to its announced length and parsed when the last byte lands.

use super::client_hello::ClientHello;
use super::error::HelloError;
use super::parse::{self, HANDSHAKE_HEADER_LEN};
use super::record::{self, Header, RECORD_HEADER_LEN};

/// Largest ClientHello body accepted by [`HelloReader::new`]: 64 KiB.
pub const MAX_HELLO_LEN: usize = 64 * 1024;
const HANDSHAKE_TYPE_CLIENT_HELLO: u8 = 1;

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

    /// A reader accepting hello bodies up to `max_len` bytes.
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
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, HelloError> {
        match &self.state {
            State::Reading => {}
            State::NotTls => return Ok(Progress::NotTls),
            State::Complete => return Err(HelloError::AlreadyComplete),
            State::Failed(e) => return Err(e.clone()),
        }
        let result = self.advance(bytes);
        match &result {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::NotTls) => self.state = State::NotTls,
            Ok(Progress::Complete(_)) => self.state = State::Complete,
            Err(e) => self.state = State::Failed(e.clone()),
        }
        if !matches!(self.state, State::Reading) {
            self.body = Vec::new();
        }
        result
    }

    fn advance(&mut self, mut input: &[u8]) -> Result<Progress, HelloError> {
        while !input.is_empty() {
            if self.record_left == 0 {
                input = match self.record_header(input)? {
                    (Header::NotTls, _) => return Ok(Progress::NotTls),
                    (_, rest) => rest,
                };
                continue;
            }
            let n = self.record_left.min(input.len());
            let (payload, rest) = input.split_at(n);
            input = rest;
            self.record_left -= n;
            if let Some(hello) = self.handshake(payload)? {
                return Ok(Progress::Complete(hello));
            }
        }
        Ok(Progress::NeedMore)
    }

    /// Gathers record header bytes from `input`; returns the verdict and the rest of `input`.
    fn record_header<'a>(&mut self, input: &'a [u8]) -> Result<(Header, &'a [u8]), HelloError> {
        if self.record_header_len == 0 {
            self.record_start = self.offset;
        }
        let have = self.record_header_len;
        let n = (RECORD_HEADER_LEN - have).min(input.len());
        let (head, rest) = input.split_at(n);
        if let Some(dst) = self.record_header.get_mut(have..have + n) {
            dst.copy_from_slice(head);
        }
        self.record_header_len += n;
        self.offset += n;
        let prefix = self.record_header.get(..self.record_header_len).unwrap_or_default();
        let header = record::judge(prefix, self.records == 0, self.record_start)?;
        if let Header::Handshake(len) = header {
            self.record_left = len;
            self.record_header_len = 0;
            self.records += 1;
        }
        Ok((header, rest))
    }

    /// Takes handshake bytes of one record; returns the hello once its last byte is in.
    fn handshake(&mut self, mut payload: &[u8]) -> Result<Option<ClientHello>, HelloError> {
        if self.handshake_header_len < HANDSHAKE_HEADER_LEN {
            let have = self.handshake_header_len;
            let n = (HANDSHAKE_HEADER_LEN - have).min(payload.len());
            let (head, rest) = payload.split_at(n);
            if let Some(dst) = self.handshake_header.get_mut(have..have + n) {
                dst.copy_from_slice(head);
            }
            self.handshake_header_len += n;
            self.offset += n;
            payload = rest;
            let [msg_type, len @ ..] = self.handshake_header;
            if have + n >= 1 && msg_type != HANDSHAKE_TYPE_CLIENT_HELLO {
                return Err(HelloError::NotClientHello { msg_type });
            }
            if self.handshake_header_len < HANDSHAKE_HEADER_LEN {
                return Ok(None);
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
                return self.finish(body).map(Some);
            }
            if payload.is_empty() {
                return Ok(None); // the body may yet come whole in the next feed
            }
            self.body.reserve_exact(self.body_len);
        }
        let n = need.min(payload.len());
        self.body.extend_from_slice(payload.get(..n).unwrap_or_default());
        self.offset += n;
        if self.body.len() < self.body_len {
            return Ok(None);
        }
        let body = std::mem::take(&mut self.body);
        self.finish(&body).map(Some)
    }

    fn finish(&self, body: &[u8]) -> Result<ClientHello, HelloError> {
        let mut hello = parse::client_hello(body)?;
        hello.wire_len = self.offset;
        hello.records = self.records;
        Ok(hello)
    }
}
