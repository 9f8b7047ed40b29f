//! Live packets from libpcap (`--features live`): open an interface, read with a timeout so that a
//! quiet interface still lets the caller check its stop conditions, optionally save what was
//! captured, and report libpcap's drop counters.
//!
//! Everything that needs privilege happens in [`LiveCapture::open`]; nothing after it does.

use std::fmt;
use std::path::Path;

use super::{Packet, Precision, Timestamp, linktype};

/// How to open the capture.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub interface: String,
    /// BPF filter (tcpdump syntax).
    pub filter: String,
    pub snaplen: u32,
    pub buffer_size: u32,
    pub promisc: bool,
    pub immediate: bool,
    /// How long one read waits for a packet before giving the caller control back.
    pub timeout_ms: u32,
}

/// Why the capture could not be opened or read.
#[derive(Debug)]
pub enum LiveError {
    /// The process lacks the capability to capture (libpcap's "Operation not permitted").
    Permission {
        interface: String,
        promisc: bool,
        message: String,
    },
    Other(String),
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveError::Permission {
                interface,
                promisc,
                message,
            } => write!(
                f,
                "cannot capture on {interface}: {message}: live capture needs CAP_NET_RAW{} \
                 (run as root, or grant them once: sudo setcap cap_net_raw,cap_net_admin=eip \
                 $(command -v wsclose))",
                if *promisc {
                    " and CAP_NET_ADMIN (for --promisc)"
                } else {
                    " (and CAP_NET_ADMIN for --promisc)"
                }
            ),
            LiveError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for LiveError {}

/// Whether a libpcap error message says the process may not capture.
pub fn is_permission_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("operation not permitted")
        || m.contains("permission denied")
        || m.contains("don't have permission")
        || m.contains("not have permission")
}

/// libpcap's counters since the capture opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets that passed the filter (on Linux: seen by the kernel filter, dropped or not).
    pub received: u64,
    /// Dropped because the kernel buffer was full: packets were not read fast enough.
    pub dropped: u64,
    /// Dropped by the interface or its driver.
    pub if_dropped: u64,
}

impl CaptureStats {
    pub fn lost(&self) -> u64 {
        self.dropped + self.if_dropped
    }
}

/// An open live capture.
pub struct LiveCapture {
    cap: pcap::Capture<pcap::Active>,
    /// The last read found a packet, so more may be waiting: read again before polling.
    ready: bool,
    timeout_ms: u32,
    linktype: u32,
    precision: Precision,
    savefile: Option<pcap::Savefile>,
}

fn other(context: &str, e: impl fmt::Display) -> LiveError {
    LiveError::Other(format!("{context}: {e}"))
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl LiveCapture {
    /// Opens the interface, asks for SLL2 on `any`, and installs the filter.
    pub fn open(opts: &LiveOptions) -> Result<LiveCapture, LiveError> {
        let iface = opts.interface.as_str();
        let inactive = pcap::Capture::from_device(iface)
            .map_err(|e| other(&format!("cannot capture on {iface}"), e))?
            .snaplen(clamp_i32(opts.snaplen))
            .buffer_size(clamp_i32(opts.buffer_size))
            .promisc(opts.promisc)
            .immediate_mode(opts.immediate)
            .timeout(clamp_i32(opts.timeout_ms.max(1)));
        // Linux stamps packets in nanoseconds and libpcap hands them on as asked; elsewhere keep
        // libpcap's default (microseconds) rather than guess whether the platform honours it.
        #[cfg(target_os = "linux")]
        let (inactive, precision) = (inactive.precision(pcap::Precision::Nano), Precision::Nano);
        #[cfg(not(target_os = "linux"))]
        let precision = Precision::Micro;
        let mut cap = inactive.open().map_err(|e| {
            let message = match &e {
                pcap::Error::PcapError(m) => m.clone(),
                e => e.to_string(),
            };
            if is_permission_error(&message) {
                LiveError::Permission {
                    interface: iface.to_owned(),
                    promisc: opts.promisc,
                    message: message.trim_start_matches(&format!("{iface}: ")).to_owned(),
                }
            } else {
                LiveError::Other(format!("cannot capture on {iface}: {message}"))
            }
        })?;
        if iface == "any" {
            // SLL2 carries the interface index and is what `tcpdump -i any` writes nowadays;
            // older libpcaps only offer SLL, which the decoder reads too.
            let _ = cap.set_datalink(pcap::Linktype(linktype::LINUX_SLL2 as i32));
        }
        cap.filter(&opts.filter, true)
            .map_err(|e| other(&format!("bad filter {:?}", opts.filter), e))?;
        let dl = cap.get_datalink().0;
        // libpcap's read timeout does not make a read return when nothing arrives (pcap(3)):
        // read without blocking and wait in poll(2) with our own timeout instead.
        let cap = cap
            .setnonblock()
            .map_err(|e| other(&format!("cannot capture on {iface}"), e))?;
        Ok(LiveCapture {
            cap,
            ready: false,
            timeout_ms: opts.timeout_ms.max(1),
            linktype: u32::try_from(dl).unwrap_or(u32::MAX),
            precision,
            savefile: None,
        })
    }

    /// Saves every packet read from now on to `path` (pcap, with this capture's link type,
    /// snaplen and timestamp precision).
    pub fn save_to(&mut self, path: &Path) -> Result<(), LiveError> {
        let Some(name) = path.to_str() else {
            return Err(LiveError::Other(format!(
                "--write {}: the path must be UTF-8",
                path.display()
            )));
        };
        let file = self
            .cap
            .savefile(name)
            .map_err(|e| other(&format!("cannot write {}", path.display()), e))?;
        self.savefile = Some(file);
        Ok(())
    }

    /// Flushes the save file (when there is one).
    pub fn flush(&mut self) -> Result<(), LiveError> {
        match &mut self.savefile {
            Some(f) => f
                .flush()
                .map_err(|e| other("cannot flush the save file", e)),
            None => Ok(()),
        }
    }

    /// LINKTYPE_* of the packets.
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Waits until the capture is readable or the timeout passes.
    fn wait(&self) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let ms = i64::from(self.timeout_ms);
        let timeout = Timespec {
            tv_sec: ms / 1000,
            tv_nsec: (ms % 1000) * 1_000_000,
        };
        let mut fds = [PollFd::new(&self.cap, PollFlags::IN)];
        // EINTR (a signal) or a timeout: either way the caller looks at its stop conditions.
        let _ = poll(&mut fds, Some(&timeout));
    }

    /// The next packet, or `None` when none came within the read timeout.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, LiveError> {
        if !self.ready {
            self.wait();
            self.ready = true;
        }
        let p = match self.cap.next_packet() {
            Ok(p) => p,
            Err(pcap::Error::TimeoutExpired) => {
                self.ready = false;
                return Ok(None);
            }
            Err(e) => return Err(other("capture failed", e)),
        };
        if let Some(f) = &mut self.savefile {
            f.write(&p);
        }
        let h = p.header;
        #[allow(clippy::unnecessary_cast)]
        let (secs, frac) = (h.ts.tv_sec as i64, h.ts.tv_usec as i64);
        let nanos = match self.precision {
            Precision::Nano => frac,
            Precision::Micro => frac.saturating_mul(1000),
        };
        Ok(Some(Packet {
            ts: Timestamp::from_parts(
                secs,
                u32::try_from(nanos.clamp(0, 999_999_999)).unwrap_or(0),
            ),
            precision: self.precision,
            linktype: self.linktype,
            data: p.data,
            orig_len: h.len,
        }))
    }

    /// libpcap's counters (None when the platform cannot tell).
    pub fn stats(&mut self) -> Option<CaptureStats> {
        self.cap.stats().ok().map(|s| CaptureStats {
            received: u64::from(s.received),
            dropped: u64::from(s.dropped),
            if_dropped: u64::from(s.if_dropped),
        })
    }
}

/// One interface as libpcap lists it.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    pub description: Option<String>,
    pub addresses: Vec<String>,
    pub flags: Vec<&'static str>,
}

/// The interfaces libpcap can capture on.
pub fn devices() -> Result<Vec<DeviceInfo>, LiveError> {
    let list = pcap::Device::list().map_err(|e| other("cannot list interfaces", e))?;
    Ok(list
        .into_iter()
        .map(|d| {
            let f = &d.flags;
            let mut flags = Vec::new();
            for (on, name) in [
                (f.is_up(), "up"),
                (f.is_running(), "running"),
                (f.is_loopback(), "loopback"),
                (f.is_wireless(), "wireless"),
            ] {
                if on {
                    flags.push(name);
                }
            }
            flags.push(match f.connection_status {
                pcap::ConnectionStatus::Connected => "connected",
                pcap::ConnectionStatus::Disconnected => "disconnected",
                pcap::ConnectionStatus::NotApplicable => "status n/a",
                pcap::ConnectionStatus::Unknown => "status unknown",
            });
            DeviceInfo {
                name: d.name,
                description: d.desc,
                addresses: d
                    .addresses
                    .iter()
                    .map(|a| match a.netmask {
                        Some(mask) => format!("{}/{}", a.addr, prefix_len(mask)),
                        None => a.addr.to_string(),
                    })
                    .collect(),
                flags,
            }
        })
        .collect())
}

fn prefix_len(mask: std::net::IpAddr) -> u32 {
    match mask {
        std::net::IpAddr::V4(m) => u32::from(m).count_ones(),
        std::net::IpAddr::V6(m) => u128::from(m).count_ones(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_are_recognised() {
        assert!(is_permission_error(
            "lo: You don't have permission to perform this capture on that device (socket: Operation not permitted)"
        ));
        assert!(is_permission_error("socket: Permission denied"));
        assert!(!is_permission_error("No such device exists"));
        let e = LiveError::Permission {
            interface: "lo".into(),
            promisc: false,
            message: "socket: Operation not permitted".into(),
        };
        let s = e.to_string();
        assert!(s.contains("CAP_NET_RAW") && s.contains("CAP_NET_ADMIN"));
        assert!(s.contains("sudo setcap cap_net_raw,cap_net_admin=eip $(command -v wsclose)"));
        assert!(!s.contains('\n'));
    }
}
