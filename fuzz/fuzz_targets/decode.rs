//! Link/IP/TCP decoding: byte 0 picks the link type (among those the decoder supports, plus one it
//! does not), the rest is the packet.
//!
//! Invariants: the payload is a slice of the input that ends at or before its end, and the wire
//! length is never below the captured payload length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsclose::capture::linktype;
use wsclose::decode::{Skip, decode};

const LINKTYPES: [u32; 9] = [
    linktype::NULL,
    linktype::ETHERNET,
    linktype::RAW,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::IPV4,
    linktype::IPV6,
    linktype::LINUX_SLL2,
    147, // LINKTYPE_USER0: not supported
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, packet)) = data.split_first() else {
        return;
    };
    let lt = LINKTYPES[usize::from(pick) % LINKTYPES.len()];
    match decode(lt, packet) {
        Ok(seg) => {
            assert!(
                seg.payload.len() as u64 <= u64::from(seg.wire_len),
                "wire_len below the captured payload"
            );
            let start = seg.payload.as_ptr() as usize;
            let base = packet.as_ptr() as usize;
            assert!(
                seg.payload.is_empty()
                    || (start >= base && start + seg.payload.len() <= base + packet.len())
            );
            assert_ne!(lt, 147);
        }
        Err(Skip::UnknownLinktype(x)) => assert_eq!(x, 147),
        Err(_) => {}
    }
});
