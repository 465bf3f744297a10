//! [`LineReader`]: the lines of an events file as bytes, each at most a
//! limit long. A longer line is still read to its newline, but in bounded
//! memory: its bytes past the limit are dropped as they are read and only
//! its length is kept, so a 1 GiB line costs no more than the limit.
//! Decoding (UTF-8, JSON) is the caller's, so a bad line is reported, not
//! an I/O error that ends the file.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest line `run --events` reads: 16 MiB. An event Zulip sends is
/// far smaller (a message's content is capped at 10,000 characters, about
/// 40 KB of UTF-8, and no other event carries more than a few such texts),
/// so the limit leaves a wide margin for any recorded event while keeping
/// one line's memory, and a batch's (see `read`), bounded.
pub(crate) const LINE_LIMIT: usize = 16 << 20;

/// One line of the file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileLine<'a> {
    /// Its number, from 1.
    pub(crate) number: u64,
    /// The file offset of its first byte.
    pub(crate) offset: u64,
    /// What it holds.
    pub(crate) body: LineBody<'a>,
}

/// A line's bytes, or why they were not kept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineBody<'a> {
    /// The line without its newline, at most the limit long.
    Bytes(&'a [u8]),
    /// A line longer than the limit, of this many bytes without its
    /// newline; read to its end and dropped.
    TooLong(u64),
}

/// Reads lines of at most `limit` bytes from a buffered reader.
pub(crate) struct LineReader<R> {
    inner: R,
    limit: usize,
    buf: Vec<u8>,
    number: u64,
    offset: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Lines of `inner`, each kept when it is at most `limit` bytes.
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            limit,
            buf: Vec::new(),
            number: 0,
            offset: 0,
        }
    }

    /// The next line, or `None` at the end of the file. A last line without
    /// a newline is a line.
    ///
    /// # Errors
    ///
    /// The reader's I/O error.
    pub(crate) async fn next_line(&mut self) -> std::io::Result<Option<FileLine<'_>>> {
        self.buf.clear();
        let start = self.offset;
        let mut len = 0u64;
        let mut read_any = false;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let (part, used, ended) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            len += part.len() as u64;
            if len <= self.limit as u64 {
                self.buf.extend_from_slice(part);
            } else {
                // Over the limit: what was kept is dropped too.
                self.buf.clear();
            }
            self.inner.consume(used);
            self.offset += used as u64;
            if ended {
                break;
            }
        }
        self.number += 1;
        let body = if len > self.limit as u64 {
            LineBody::TooLong(len)
        } else {
            LineBody::Bytes(&self.buf)
        };
        Ok(Some(FileLine {
            number: self.number,
            offset: start,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input` read with `limit`, through a reader that hands
    /// out `capacity` bytes at a time.
    async fn read_all(input: &[u8], limit: usize, capacity: usize) -> Vec<(u64, u64, String)> {
        let reader = tokio::io::BufReader::with_capacity(capacity, input);
        let mut lines = LineReader::new(reader, limit);
        let mut out = Vec::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            let body = match l.body {
                LineBody::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                LineBody::TooLong(n) => format!("<{n} bytes>"),
            };
            out.push((l.number, l.offset, body));
        }
        out
    }

    #[tokio::test]
    async fn lines_are_numbered_with_their_offsets_and_a_last_line_needs_no_newline() {
        let lines = read_all(b"ab\n\ncde\nf", 10, 2).await;
        assert_eq!(
            lines,
            vec![
                (1, 0, "ab".to_owned()),
                (2, 3, String::new()),
                (3, 4, "cde".to_owned()),
                (4, 8, "f".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_reported_by_length_and_the_next_is_read() {
        let lines = read_all(b"1234\n12345\n123456789\nok\n", 5, 3).await;
        assert_eq!(
            lines,
            vec![
                (1, 0, "1234".to_owned()),
                (2, 5, "12345".to_owned()),
                (3, 11, "<9 bytes>".to_owned()),
                (4, 21, "ok".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_long_line_keeps_no_more_than_the_limit_in_memory() {
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\nend\n");
        let reader = tokio::io::BufReader::with_capacity(100, &input[..]);
        let mut lines = LineReader::new(reader, 1000);
        let first = lines.next_line().await.unwrap().unwrap();
        assert_eq!(first.body, LineBody::TooLong(1 << 20));
        assert!(lines.buf.capacity() <= 2 * 1000, "{}", lines.buf.capacity());
        let second = lines.next_line().await.unwrap().unwrap();
        assert_eq!(second.body, LineBody::Bytes(b"end"));
        assert!(lines.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_empty_input_has_no_lines() {
        assert!(read_all(b"", 5, 4).await.is_empty());
    }
}
