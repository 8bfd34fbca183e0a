//! Wire-protocol helpers: frame splitting on the hot path and the few messages pgroute writes itself.
//!
//! Result rows are never decoded: a frame is found by its 5-byte header (type byte + length) and its
//! bytes are copied to the other side as they are. pgwire encodes the messages pgroute originates
//! (authentication, ParameterStatus, ErrorResponse, …); decoding is limited to what routing needs.

pub mod messages;

use bytes::{Buf, BytesMut};

/// Largest message pgroute accepts from a client or server. PostgreSQL's own limit for most
/// messages is 1 GB - 1 (`PQ_LARGE_MESSAGE_LIMIT`).
pub const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;

/// A frame's header is malformed: the peer does not speak the protocol (or is hostile).
#[derive(Debug, thiserror::Error)]
#[error("invalid message length {len} for message type {tag:?}")]
pub struct FrameError {
    pub tag: char,
    pub len: i64,
}

/// Length of the complete frame at the start of `buf` (type byte included), or `None` when more
/// bytes are needed.
#[inline]
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize > MAX_MESSAGE_LEN {
        return Err(FrameError {
            tag: buf[0] as char,
            len: len as i64,
        });
    }
    let total = len as usize + 1;
    Ok((buf.len() >= total).then_some(total))
}

/// Splits the next complete frame off the front of `buf`.
#[inline]
pub fn split_frame(buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
    Ok(frame_len(buf)?.map(|n| buf.split_to(n)))
}

/// The complete frames at the front of a receive buffer, read where they lie: the buffer
/// advances past the frames read once, when the cursor is dropped (no split per frame).
pub struct Frames<'a> {
    buf: &'a mut BytesMut,
    at: usize,
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a mut BytesMut) -> Self {
        Frames { buf, at: 0 }
    }

    /// The next complete frame (type byte included), or `None` when more bytes are needed.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let start = self.at;
        let Some(len) = frame_len(&self.buf[start..])? else {
            return Ok(None);
        };
        self.at += len;
        Ok(Some(&self.buf[start..start + len]))
    }
}

impl Drop for Frames<'_> {
    fn drop(&mut self) {
        self.buf.advance(self.at);
    }
}

/// A cursor over a message body for the few fields pgroute reads.
pub struct Body<'a>(&'a [u8]);

/// The body of a message was shorter than its fields.
#[derive(Debug, thiserror::Error)]
#[error("malformed {0} message")]
pub struct BodyError(pub &'static str);

impl<'a> Body<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Body(bytes)
    }

    /// The body of a full frame (type byte and length skipped).
    pub fn of_frame(frame: &'a [u8]) -> Self {
        Body(frame.get(5..).unwrap_or_default())
    }

    /// Reads a NUL-terminated string.
    pub fn cstr(&mut self, what: &'static str) -> Result<&'a str, BodyError> {
        std::str::from_utf8(self.cbytes(what)?).map_err(|_| BodyError(what))
    }

    /// Reads a NUL-terminated string as bytes (SQL text in a client encoding other than UTF-8
    /// is not valid UTF-8, and still has to be forwarded).
    pub fn cbytes(&mut self, what: &'static str) -> Result<&'a [u8], BodyError> {
        let end = self.0.iter().position(|b| *b == 0).ok_or(BodyError(what))?;
        let s = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, BodyError> {
        let b = *self.0.first().ok_or(BodyError(what))?;
        self.0 = &self.0[1..];
        Ok(b)
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, BodyError> {
        if self.0.len() < 4 {
            return Err(BodyError(what));
        }
        let v = (&self.0[..4]).get_i32();
        self.0 = &self.0[4..];
        Ok(v)
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

/// Backend message type bytes pgroute looks at.
pub mod tag {
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const ERROR: u8 = b'E';
    pub const NOTICE: u8 = b'N';
    pub const NOTIFICATION: u8 = b'A';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const NO_DATA: u8 = b'n';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const COPY_IN: u8 = b'G';
    pub const COPY_OUT: u8 = b'H';
    pub const COPY_BOTH: u8 = b'W';
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_their_length() {
        let mut buf = BytesMut::from(&b"Z\0\0\0\x05IC\0\0\0\x04"[..]);
        let f = split_frame(&mut buf).unwrap().unwrap();
        assert_eq!(&f[..], b"Z\0\0\0\x05I");
        assert_eq!(&buf[..], b"C\0\0\0\x04");
        assert!(split_frame(&mut BytesMut::from(&b"Z\0\0\0\x05"[..]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn frames_are_read_in_place_and_consumed_when_the_cursor_drops() {
        let mut buf = BytesMut::from(&b"Z\0\0\0\x05IC\0\0\0\x04D\0"[..]);
        {
            let mut frames = Frames::new(&mut buf);
            assert_eq!(frames.next_frame().unwrap(), Some(&b"Z\0\0\0\x05I"[..]));
            assert_eq!(frames.next_frame().unwrap(), Some(&b"C\0\0\0\x04"[..]));
            assert_eq!(frames.next_frame().unwrap(), None);
        }
        assert_eq!(&buf[..], b"D\0");
    }

    #[test]
    fn negative_or_tiny_lengths_are_rejected() {
        assert!(frame_len(b"Q\xff\xff\xff\xff").is_err());
        assert!(frame_len(b"Q\0\0\0\x03").is_err());
    }

    #[test]
    fn body_reads_fields_and_rejects_truncation() {
        let frame = b"B\0\0\0\x0bp\0s1\0\0\0";
        let mut body = Body::of_frame(frame);
        assert_eq!(body.cstr("bind").unwrap(), "p");
        assert_eq!(body.cstr("bind").unwrap(), "s1");
        assert!(Body(b"abc").cstr("x").is_err());
        assert!(Body(b"ab").i32("x").is_err());
    }

    proptest::proptest! {
        /// Frame splitting and body reading never panic on arbitrary bytes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = split_frame(&mut buf) {
                let mut body = Body::of_frame(&frame);
                let _ = body.cstr("x");
                let _ = body.cbytes("x");
                let _ = body.i32("x");
                let _ = body.u8("x");
            }
        }
    }
}
