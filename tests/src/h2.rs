//! A minimal blocking HTTP/2 client for one GET over an established TLS stream: enough to prove a
//! request reached an h2-only backend and to read its body. Response headers are not decoded
//! beyond `:status` in its indexed (static table) form.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const STREAM: u32 = 1;
/// Frames larger than this are refused (the default SETTINGS_MAX_FRAME_SIZE is 16 KiB).
const MAX_FRAME: usize = 1 << 20;
/// Bounds the number of frames read for one response.
const MAX_FRAMES: usize = 1000;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK "literal header field without indexing, indexed name" with a raw (non-Huffman) value.
fn literal(out: &mut Vec<u8>, name_index: u8, value: &str) -> Result<()> {
    if value.len() > 126 || name_index > 14 {
        bail!("h2 header value too long for this minimal encoder: {value:?}");
    }
    out.push(name_index);
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn request_headers(authority: &str, path: &str) -> Result<Vec<u8>> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    if path == "/" {
        block.push(0x84); // :path /
    } else {
        literal(&mut block, 4, path)?;
    }
    literal(&mut block, 1, authority)?; // :authority
    Ok(block)
}

/// `:status` from the first field of a header block when it is an indexed static entry.
fn status_of(block: &[u8]) -> u16 {
    match block.first() {
        Some(0x88) => 200,
        Some(0x89) => 204,
        Some(0x8a) => 206,
        Some(0x8b) => 304,
        Some(0x8c) => 400,
        Some(0x8d) => 404,
        Some(0x8e) => 500,
        _ => 0,
    }
}

/// Strips padding (and priority fields for HEADERS) from a frame payload.
fn frame_content(kind: u8, flags: u8, payload: &[u8]) -> Result<&[u8]> {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&p, rest) = body.split_first().context("h2: padded frame without pad length")?;
        pad = p as usize;
        body = rest;
    }
    if kind == FRAME_HEADERS && flags & FLAG_PRIORITY != 0 {
        body = body.get(5..).context("h2: HEADERS priority fields truncated")?;
    }
    if pad > body.len() {
        bail!("h2: padding longer than frame");
    }
    Ok(&body[..body.len() - pad])
}

/// Sends `GET path` on stream 1 and returns (status, body). `status` is 0 when the server used an
/// encoding this minimal decoder does not read.
pub fn get<S: Read + Write>(stream: &mut S, authority: &str, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    out.extend(frame(FRAME_HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, STREAM, &request_headers(authority, path)?));
    stream.write_all(&out).context("h2: sending request")?;
    stream.flush()?;

    let mut status = 0u16;
    let mut body = Vec::new();
    for _ in 0..MAX_FRAMES {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).context("h2: reading frame header")?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            bail!("h2: frame of {len} bytes");
        }
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).context("h2: reading frame payload")?;
        match kind {
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                stream.write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))?;
                stream.flush()?;
            }
            FRAME_PING if flags & FLAG_ACK == 0 => {
                stream.write_all(&frame(FRAME_PING, FLAG_ACK, 0, &payload))?;
                stream.flush()?;
            }
            FRAME_HEADERS if id == STREAM => {
                if status == 0 {
                    status = status_of(frame_content(kind, flags, &payload)?);
                }
                if flags & FLAG_END_STREAM != 0 {
                    return Ok((status, body));
                }
            }
            FRAME_DATA if id == STREAM => {
                body.extend_from_slice(frame_content(kind, flags, &payload)?);
                if flags & FLAG_END_STREAM != 0 {
                    return Ok((status, body));
                }
            }
            FRAME_RST_STREAM if id == STREAM => bail!("h2: stream reset by server: {payload:02x?}"),
            FRAME_GOAWAY => bail!("h2: GOAWAY before the response ended: {payload:02x?}"),
            _ => {}
        }
    }
    bail!("h2: no end of stream within {MAX_FRAMES} frames")
}
