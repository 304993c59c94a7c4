//! After decryption: what a key holder sealed is decoded as a datagram or a TCP frame body.
//! Key holders are trusted, but a bug or a corrupted sender must get a typed error, never a
//! panic or an unbounded allocation. The input is also sealed and opened on the way, so the
//! path is the daemon's own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbwatch::secure::{Gate, Key, Keyring};
use nbwatch::wire;

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::single(Key::from_bytes([7; 32]));
    let sender = Gate::keyed("fuzz", "a", ring.clone(), None);
    let receiver = Gate::keyed("fuzz", "b", ring, None);
    let from = "127.0.0.1:1".parse().unwrap();
    let opened = receiver
        .open_datagram(from, &sender.seal_datagram(nbwatch::secure::To::Node("b"), data))
        .expect("a sealed datagram opens");
    assert_eq!(opened, data);
    if let Ok(env) = wire::decode(&opened) {
        // Whatever decodes encodes again (or is refused for size), without panicking.
        let _ = wire::encode(&env);
    }
    if let Ok(frame) = wire::decode_frame(data) {
        let _ = wire::encode_frame(&frame);
    }
});
