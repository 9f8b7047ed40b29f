//! Bytes a printer writes once and reads back once, in flat memory: the rows of a table while
//! its column widths are found, the parts of a markdown report while its summary is counted.

use std::io::{self, Read, Seek, Write};

/// Bytes written once and read back once: in an unnamed temporary file while it can be written,
/// in memory otherwise (none could be made, or a write failed: a full disk costs memory, not the
/// report, as with the analyzer's spill).
pub(super) struct Spool {
    file: Option<std::fs::File>,
    /// Bytes written to the file; they come first.
    on_disk: u64,
    /// A write to the file failed: what follows `on_disk` there is ignored, and no more is written.
    full: bool,
    /// Bytes not on disk yet (up to [`SPOOL_CHUNK`]), or all those after a failed write.
    memory: Vec<u8>,
    /// Tests: writes to the file that succeed before every further one fails (a full disk).
    #[cfg(test)]
    pub(super) writes_left: Option<u32>,
}

/// What a spool keeps in memory before it writes to its file (in tests, little: so that their
/// rows go to the file and back).
#[cfg(not(test))]
const SPOOL_CHUNK: usize = 64 << 10;
#[cfg(test)]
const SPOOL_CHUNK: usize = 100;

impl Spool {
    pub(super) fn memory() -> Spool {
        Spool {
            file: None,
            on_disk: 0,
            full: false,
            memory: Vec::new(),
            #[cfg(test)]
            writes_left: None,
        }
    }

    pub(super) fn temporary_file() -> Spool {
        Spool {
            file: tempfile::tempfile().ok(),
            ..Spool::memory()
        }
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) {
        self.memory.extend_from_slice(bytes);
        if self.memory.len() < SPOOL_CHUNK || self.full {
            return;
        }
        let Some(file) = &mut self.file else { return };
        #[cfg(test)]
        let refused = match &mut self.writes_left {
            Some(0) => true,
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        };
        #[cfg(not(test))]
        let refused = false;
        if !refused && file.write_all(&self.memory).is_ok() {
            self.on_disk += self.memory.len() as u64;
            self.memory.clear();
        } else {
            self.full = true;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.on_disk == 0 && self.memory.is_empty()
    }

    pub(super) fn read_back(self) -> io::Result<Box<dyn io::BufRead>> {
        let memory = io::Cursor::new(self.memory);
        match self.file {
            Some(mut file) if self.on_disk > 0 => {
                file.seek(io::SeekFrom::Start(0))?;
                let on_disk = io::BufReader::new(file.take(self.on_disk));
                Ok(Box::new(on_disk.chain(memory)))
            }
            _ => Ok(Box::new(memory)),
        }
    }
}
