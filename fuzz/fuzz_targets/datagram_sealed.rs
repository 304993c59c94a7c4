//! Before decryption: whatever arrives at the gossip port goes through the gate first. No
//! input may panic it, and nothing but a frame sealed with the ring's key may open. The first
//! byte picks whether the input also gets a valid magic and key id in front, so the fuzzer
//! reaches the tag check instead of stopping at the magic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbwatch::secure::{Gate, Key, Keyring, frame};
use std::sync::LazyLock;

static KEY: LazyLock<Key> = LazyLock::new(|| Key::from_bytes([7; 32]));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = Vec::with_capacity(rest.len() + 8);
    if mode & 1 == 1 {
        // Either version's magic: both are opened (the previous one within the window).
        let magic = match mode & 2 {
            0 => frame::MAGIC,
            _ => frame::MAGIC_V1,
        };
        bytes.extend_from_slice(&magic);
        bytes.extend_from_slice(&KEY.id().0.to_be_bytes());
    }
    bytes.extend_from_slice(rest);
    let ring = Keyring::single(KEY.clone());
    for kind in [
        frame::Kind::Datagram,
        frame::Kind::Request,
        frame::Kind::Answer,
    ] {
        assert!(frame::open(&ring, "fuzz", kind, "me", &[], &bytes).is_err());
    }
    let gate = Gate::keyed("fuzz", "me", ring, None);
    let from = "127.0.0.1:1".parse().unwrap();
    assert!(gate.open_datagram(from, &bytes).is_none());
    assert!(gate.open_request(from, &bytes).is_none());
});
