//! The client's end of a session: its socket, the bytes read from it and not processed yet, and
//! the bytes queued for it. Nothing else reads or writes the client's socket.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Violation;
use crate::protocol::{frame_len, split_frame};

/// Longest startup packet body PostgreSQL reads (MAX_STARTUP_PACKET_LENGTH); the length word
/// itself comes on top.
const MAX_STARTUP_LEN: i32 = 10000;

/// Longest message before authentication: PostgreSQL reads a password or SASL message of at
/// most PG_MAX_AUTH_TOKEN_LENGTH (65535) bytes.
pub const MAX_AUTH_MESSAGE: usize = 65535;

/// A client connection over a plain TCP socket.
pub type Client = ClientConn<TcpStream>;

/// One client's connection: generic over the stream, so that TLS can be slotted in.
#[derive(Debug)]
pub struct ClientConn<S> {
    stream: S,
    /// Bytes read from the client and not processed yet.
    received: BytesMut,
    /// Bytes for the client, written by the next [`ClientConn::flush`].
    out: BytesMut,
    /// Longest message accepted (its declared length, type byte excluded).
    max_message: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientConn<S> {
    pub fn new(stream: S) -> Self {
        ClientConn {
            stream,
            received: BytesMut::with_capacity(8 * 1024),
            out: BytesMut::with_capacity(16 * 1024),
            max_message: MAX_AUTH_MESSAGE,
        }
    }

    /// Accepts messages up to `max` bytes from now on (`limits.max_message_size`, after login).
    pub fn set_max_message(&mut self, max: usize) {
        self.max_message = max;
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The declared length of the message at the front, when it is longer than allowed: the
    /// message is refused before it is read, so it is never buffered whole.
    #[inline]
    pub fn oversized(&self) -> Option<usize> {
        let word = self.received.get(1..5)?;
        let len = i32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        // An impossible length (negative, beyond PostgreSQL's 1 GB) is a protocol violation,
        // which the framing reports.
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= crate::protocol::MAX_MESSAGE_LEN)?;
        (len > self.max_message).then_some(len)
    }

    /// Reads what the client sent next; Ok(0) when it closed its side. Cancel-safe: nothing is
    /// lost if the read is abandoned.
    #[inline]
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        self.stream.read_buf(&mut self.received).await
    }

    /// Number of bytes received and not processed yet.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.received.len()
    }

    /// The complete frame at the front of what was received (type byte included), left in
    /// place; None while more bytes are needed.
    #[inline]
    pub fn peek_frame(&self) -> Result<Option<&[u8]>, Violation> {
        Ok(frame_len(&self.received)?.map(|n| &self.received[..n]))
    }

    /// Takes the complete frame at the front of what was received; None while more bytes are
    /// needed.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, Violation> {
        if let Some(len) = self.oversized() {
            return Err(Violation::TooLong(len));
        }
        Ok(split_frame(&mut self.received)?)
    }

    /// Takes the length-prefixed startup-phase packet (no type byte) at the front of what was
    /// received: Ok(None) while more bytes are needed, Err when its length is impossible (a
    /// client that sent Terminate or any typed message first gets here too).
    pub fn next_startup_packet(&mut self) -> Result<Option<Bytes>, ImpossibleLength> {
        let Some(word) = self.received.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = i32::from_be_bytes(*word);
        // "len -= 4; if (len < sizeof(ProtocolVersion) || len > MAX_STARTUP_PACKET_LENGTH)"
        let body = len
            .checked_sub(4)
            .filter(|b| (4..=MAX_STARTUP_LEN).contains(b))
            .ok_or(ImpossibleLength)?;
        let total = body as usize + 4;
        Ok((self.received.len() >= total).then(|| self.received.split_to(total).freeze()))
    }

    /// The bytes queued for the client: builders of pgroute's own replies append here.
    #[inline]
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Drops what was queued for the client and not written yet.
    pub fn discard_queued(&mut self) {
        self.out.clear();
    }

    /// Writes everything queued for the client (one write; nothing when the queue is empty).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Writes what is queued and closes the sending side.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.stream.shutdown().await
    }
}

/// A startup packet's length word is out of PostgreSQL's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpossibleLength;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_queued_and_flushed() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut conn = ClientConn::new(near);
        far.write_all(b"Q\0\0\0\x06x\0S\0\0").await.unwrap();
        assert!(conn.read_more().await.unwrap() > 0);
        assert_eq!(conn.peek_frame().unwrap(), Some(&b"Q\0\0\0\x06x\0"[..]));
        assert_eq!(&conn.next_frame().unwrap().unwrap()[..], b"Q\0\0\0\x06x\0");
        assert_eq!(conn.next_frame().unwrap(), None);
        assert_eq!(conn.buffered(), 3);
        conn.out().extend_from_slice(b"Z\0\0\0\x05I");
        conn.flush().await.unwrap();
        let mut got = [0u8; 6];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"Z\0\0\0\x05I");
    }

    #[tokio::test]
    async fn startup_packets_are_split_by_their_length_word() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut conn = ClientConn::new(near);
        far.write_all(b"\0\0\0\x08\x04\xd2\x16\x2f\0\0\0\x02")
            .await
            .unwrap();
        conn.read_more().await.unwrap();
        let pkt = conn.next_startup_packet().unwrap().unwrap();
        assert_eq!(&pkt[..], b"\0\0\0\x08\x04\xd2\x16\x2f");
        // A length word of 2 is below the smallest packet.
        assert_eq!(conn.next_startup_packet(), Err(ImpossibleLength));
    }
}
