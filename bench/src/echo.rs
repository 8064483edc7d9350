//! The physical floor: a request/response round trip over a Unix socket between two
//! processes, of the same byte sizes as the benchmark's `find` and its reply. The harness
//! re-executes itself (`mongo-pool-bench echo-server PATH`) as the server process.
//!
//! Framing, MongoDB-like: a request is `u32 LE total length`, `u32 LE reply length`, padding;
//! the server answers with `reply length` bytes (starting with that length) once the whole
//! request has arrived.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// The smallest frame: the two lengths.
const HEADER: usize = 8;
/// The largest frame either side accepts.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Serves echo round trips on `path` until the process is killed.
///
/// # Errors
/// When the socket cannot be bound.
pub async fn serve(path: &Path) -> anyhow::Result<()> {
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = answer(stream).await;
        });
    }
}

/// Answers every request on one connection until it closes.
async fn answer(mut stream: UnixStream) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut header = [0u8; HEADER];
        if stream.read_exact(&mut header).await.is_err() {
            return Ok(());
        }
        let (total, reply) = lengths(&header)?;
        let mut rest = total - HEADER;
        while rest > 0 {
            let n = rest.min(buf.len());
            stream.read_exact(&mut buf[..n]).await?;
            rest -= n;
        }
        let mut out = vec![0u8; reply];
        out[..4].copy_from_slice(&u32::try_from(reply)?.to_le_bytes());
        stream.write_all(&out).await?;
    }
}

/// The two lengths of a header, checked.
fn lengths(header: &[u8; HEADER]) -> anyhow::Result<(usize, usize)> {
    let total = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let reply = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !(HEADER..=MAX_FRAME).contains(&total) || !(4..=MAX_FRAME).contains(&reply) {
        bail!("bad echo frame: total {total}, reply {reply}");
    }
    Ok((total, reply))
}

/// A connection to the echo server.
#[derive(Debug)]
pub struct EchoClient {
    stream: UnixStream,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl EchoClient {
    /// Connects to `path`, retrying for up to `limit` while the server starts; round trips
    /// send `request_len` bytes and receive `reply_len` bytes.
    ///
    /// # Errors
    /// When the server does not accept within `limit` or a size is out of range.
    pub async fn connect(
        path: &Path,
        request_len: usize,
        reply_len: usize,
        limit: Duration,
    ) -> anyhow::Result<EchoClient> {
        if !(HEADER..=MAX_FRAME).contains(&request_len) || !(4..=MAX_FRAME).contains(&reply_len) {
            bail!("echo sizes out of range: {request_len} / {reply_len}");
        }
        let deadline = Instant::now() + limit;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("echo server at {}", path.display()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let mut request = vec![0u8; request_len];
        request[..4].copy_from_slice(&u32::try_from(request_len)?.to_le_bytes());
        request[4..8].copy_from_slice(&u32::try_from(reply_len)?.to_le_bytes());
        Ok(EchoClient {
            stream,
            request,
            reply: vec![0u8; reply_len],
        })
    }

    /// One round trip; returns how long it took.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn round_trip(&mut self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.stream.write_all(&self.request).await?;
        self.stream.read_exact(&mut self.reply).await?;
        Ok(start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn round_trips_carry_the_requested_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let server = tokio::spawn({
            let path = path.clone();
            async move { serve(&path).await }
        });
        let mut client = EchoClient::connect(&path, 150, 300, Duration::from_secs(5))
            .await
            .unwrap();
        for _ in 0..3 {
            client.round_trip().await.unwrap();
            assert_eq!(&client.reply[..4], &300u32.to_le_bytes());
        }
        server.abort();
    }

    #[test]
    fn frames_outside_the_limits_are_refused() {
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&4u32.to_le_bytes());
        header[4..].copy_from_slice(&100u32.to_le_bytes());
        assert!(lengths(&header).is_err(), "shorter than its own header");
        header[..4].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(lengths(&header).unwrap(), (100, 100));
    }
}
