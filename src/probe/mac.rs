//! This host's MAC address, gossiped as `mac` so that another host can wake it with a
//! Wake-on-LAN magic packet when it is down (`[[alerts.actions]]` of type `wol`).
//!
//! The address is that of the interface holding the address the node advertises; when it
//! advertises no particular interface's address (an unspecified or loopback address), the
//! first physical interface by name (one with a device: not a bridge or a veth) with a MAC
//! address. An advertised address no interface holds (behind NAT) announces none.

use std::net::IpAddr;

/// `aa:bb:cc:dd:ee:ff` of the interface for `ip`, if there is one with a MAC address.
pub fn for_address(ip: IpAddr) -> Option<String> {
    let networks = sysinfo::Networks::new_with_refreshed_list().ok()?;
    let mut interfaces: Vec<(&std::ffi::OsString, &sysinfo::NetworkData)> =
        (&networks).into_iter().collect();
    interfaces.sort_by(|a, b| a.0.cmp(b.0));
    let has_mac = |data: &sysinfo::NetworkData| data.mac_address() != sysinfo::MacAddr::UNSPECIFIED;
    let named = (interfaces.iter())
        .find(|(_, data)| data.ip_networks().iter().any(|n| n.addr == ip))
        .filter(|(_, data)| has_mac(data));
    let chosen = match named {
        Some(found) => Some(found),
        // A physical interface (it has a device): not a bridge, veth or tunnel of containers.
        None if ip.is_unspecified() || ip.is_loopback() => {
            (interfaces.iter()).find(|(name, data)| {
                name.as_os_str() != "lo"
                    && has_mac(data)
                    && std::path::Path::new("/sys/class/net")
                        .join(name)
                        .join("device")
                        .exists()
            })
        }
        None => None,
    };
    chosen.map(|(_, data)| data.mac_address().to_string())
}

/// The six bytes of `aa:bb:cc:dd:ee:ff` (or with `-`), if it is one.
pub fn parse(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (byte, part) in out.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(out)
}

/// A Wake-on-LAN magic packet: six `0xff`, then the MAC address sixteen times.
pub fn magic_packet(mac: [u8; 6]) -> [u8; 102] {
    let mut packet = [0xffu8; 102];
    for chunk in packet[6..].chunks_mut(6) {
        chunk.copy_from_slice(&mac);
    }
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_magic_packet_is_six_ff_and_sixteen_times_the_address() {
        let mac = parse("02:1a:2B:3c:4d:5e").expect("a MAC address");
        assert_eq!(mac, [0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
        let p = magic_packet(mac);
        assert_eq!(&p[..6], &[0xff; 6]);
        for k in 0..16 {
            assert_eq!(&p[6 + k * 6..12 + k * 6], &mac);
        }
        assert_eq!(parse("02-1a-2b-3c-4d-5e"), Some(mac));
        for bad in [
            "",
            "02:1a:2b:3c:4d",
            "02:1a:2b:3c:4d:5e:6f",
            "0g:1a:2b:3c:4d:5e",
            "2:1a:2b:3c:4d:5e",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
