//! Finished connections on disk: once a connection has ended (and lingered, for its last packets),
//! it is encoded with postcard into an unnamed temporary file and freed; only its [`Brief`] stays
//! in memory, for the rules across connections. The report reads each connection back once, when
//! its turn comes. Memory then follows the connections open at once, not the length of the capture.
//!
//! The file is the operating system's to cache (it is deleted when closed, or when the process
//! dies); it is read with positioned reads, so report threads share it without a lock.

use std::fs::File;
use std::io::{self, Write};

use super::{Brief, Connection, SharedStrings};

/// Encoded connections are written to the file in batches of about this much.
const WRITE_BATCH: usize = 256 << 10;

/// Where one encoded connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub offset: u64,
    pub len: u32,
    /// Which of the analysis' spill files (one per analyzer): 0 until
    /// [`super::Analysis::merge`]. In the padding the offset leaves.
    pub file: u32,
}

/// An append-only file of encoded connections.
pub struct SpillFile {
    file: File,
    /// Bytes written to the file so far.
    written: u64,
    /// Encoded connections not yet written (they follow `written`).
    pending: Vec<u8>,
    /// Tests: writes that succeed before every further one fails (a full disk).
    #[cfg(test)]
    pub(crate) writes_left: Option<u32>,
    /// Tests: every read fails (a file gone bad).
    #[cfg(test)]
    pub(crate) reads_fail: bool,
}

impl std::fmt::Debug for SpillFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillFile")
            .field("written", &self.written)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl SpillFile {
    /// A new unnamed file in the temporary directory (`TMPDIR`). Only where positioned reads exist
    /// (Unix); elsewhere connections stay in memory.
    pub fn new() -> io::Result<SpillFile> {
        if !cfg!(unix) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "spilling needs positioned reads",
            ));
        }
        Ok(SpillFile {
            file: tempfile::tempfile()?,
            written: 0,
            pending: Vec::new(),
            #[cfg(test)]
            writes_left: None,
            #[cfg(test)]
            reads_fail: false,
        })
    }

    /// Appends `conn`; says where it went.
    pub fn write(&mut self, conn: &Connection) -> io::Result<Location> {
        #[cfg(test)]
        if let Some(left) = &mut self.writes_left {
            if *left == 0 {
                return Err(io::Error::other("no space left (test)"));
            }
            *left -= 1;
        }
        let start = self.pending.len();
        let offset = self.written + start as u64;
        self.pending = postcard::to_extend(conn, std::mem::take(&mut self.pending))
            .map_err(io::Error::other)?;
        let len = u32::try_from(self.pending.len() - start).map_err(io::Error::other)?;
        if self.pending.len() >= WRITE_BATCH {
            self.flush()?;
        }
        Ok(Location {
            offset,
            len,
            file: 0,
        })
    }

    /// Writes out what is pending (before the file is read by several threads).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        self.pending.shrink_to(WRITE_BATCH);
        Ok(())
    }

    /// The connection stored at `at`.
    pub fn read(&self, at: Location) -> io::Result<Connection> {
        #[cfg(test)]
        if self.reads_fail {
            return Err(io::Error::other("unreadable (test)"));
        }
        let len = at.len as usize;
        let conn = if at.offset >= self.written {
            let from = usize::try_from(at.offset - self.written).map_err(io::Error::other)?;
            let bytes = from
                .checked_add(len)
                .and_then(|end| self.pending.get(from..end))
                .ok_or_else(|| io::Error::other("spilled connection out of range"))?;
            postcard::from_bytes(bytes)
        } else {
            let mut bytes = vec![0; len];
            read_exact_at(&self.file, &mut bytes, at.offset)?;
            postcard::from_bytes(&bytes)
        };
        conn.map_err(|e| io::Error::other(format!("spilled connection unreadable: {e}")))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(_: &File, _: &mut [u8], _: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A finished connection kept for the report: in memory, or on disk with its brief. The brief
/// is held in place, not boxed: the list of them is one large allocation, where a box per
/// connection cost a pointer and an allocation header each and scattered them among the freed
/// connections (2.7 MiB of peak RSS at 54,000 connections).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every connection is spilled: the large variant is the common one"
)]
pub enum Stored {
    Memory(Box<Connection>),
    Spilled {
        brief: Brief,
        at: Location,
    },
    /// Taken back into the flow table by a late packet (it will be stored again).
    Gone,
}

impl Stored {
    /// `conn`, written to the analyzer's own file (file 0 until [`super::Analysis::merge`]) at `at`.
    pub fn spilled(conn: &Connection, at: Location, strings: &mut SharedStrings) -> Stored {
        Stored::Spilled {
            brief: Brief::of(conn, strings),
            at,
        }
    }

    pub fn id(&self) -> Option<u64> {
        match self {
            Stored::Memory(c) => Some(c.id),
            Stored::Spilled { brief, .. } => Some(brief.id),
            Stored::Gone => None,
        }
    }

    pub fn set_id(&mut self, id: u64) {
        match self {
            Stored::Memory(c) => c.id = id,
            Stored::Spilled { brief, .. } => brief.id = id,
            Stored::Gone => {}
        }
    }
}

/// A connection or a brief of an [`super::Analysis`]: borrowed from it, or made (read back from
/// disk, or worked out) for the caller. Like a `Cow`, but a pointer wide whichever it is, for
/// lists of thousands.
#[derive(Debug)]
pub enum Held<'a, T> {
    Borrowed(&'a T),
    Owned(Box<T>),
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Held::Borrowed(c) => c,
            Held::Owned(c) => c,
        }
    }
}

impl<T: Clone> Clone for Held<'_, T> {
    fn clone(&self) -> Self {
        match self {
            Held::Borrowed(c) => Held::Borrowed(c),
            Held::Owned(c) => Held::Owned(c.clone()),
        }
    }
}
