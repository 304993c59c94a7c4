//! Prometheus' remote-write protocol (version 1.0), as Prometheus, VictoriaMetrics, Mimir and
//! Thanos receive it: a `WriteRequest` in protobuf, compressed with snappy's block format, POSTed
//! with `Content-Encoding: snappy`. Both encoders are written here, for the few messages this
//! needs, rather than pulling in a protobuf and a compression crate:
//!
//! * protobuf: `WriteRequest { repeated TimeSeries timeseries = 1; }`, `TimeSeries { repeated
//!   Label labels = 1; repeated Sample samples = 2; }`, `Label { string name = 1; string value
//!   = 2; }`, `Sample { double value = 1; int64 timestamp = 2; }` (milliseconds);
//! * snappy: a block is the uncompressed length as a varint, then elements; an element may be
//!   a literal of up to 2^32 bytes. Only literals are written (valid snappy every decoder reads):
//!   the batches are small and the link is a LAN, so compression is not worth its code here.
//!
//! Labels are sorted by name, `__name__` first, as the protocol requires.

/// One series: its labels (`__name__` among them) and its samples, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    /// (milliseconds since the epoch, value).
    pub samples: Vec<(i64, f64)>,
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// The protobuf `WriteRequest` of `series`.
pub fn encode(series: &[Series]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in series {
        let mut ts = Vec::new();
        let mut labels: Vec<&(String, String)> = s.labels.iter().collect();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in labels {
            let mut label = Vec::new();
            bytes_field(1, name.as_bytes(), &mut label);
            bytes_field(2, value.as_bytes(), &mut label);
            bytes_field(1, &label, &mut ts);
        }
        for (at, value) in &s.samples {
            let mut sample = Vec::new();
            // double value = 1 (wire type 1, fixed 64 bits, little-endian).
            varint(1 << 3 | 1, &mut sample);
            sample.extend_from_slice(&value.to_le_bytes());
            // int64 timestamp = 2 (varint; two's complement for negatives).
            varint(2 << 3, &mut sample);
            varint(*at as u64, &mut sample);
            bytes_field(2, &sample, &mut ts);
        }
        bytes_field(1, &ts, &mut out);
    }
    out
}

/// `data` as a snappy block of literals.
pub fn snappy(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    varint(data.len() as u64, &mut out);
    // Literals of at most 65536 bytes: tag 61 (60 + 1) means a 2-byte length - 1 follows.
    for chunk in data.chunks(65_536) {
        let n = chunk.len() - 1;
        if n < 60 {
            out.push((n as u8) << 2);
        } else if n < 256 {
            out.push(60 << 2);
            out.push(n as u8);
        } else {
            out.push(61 << 2);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_request_is_encoded_as_protobuf_with_sorted_labels() {
        let series = [Series {
            labels: vec![
                ("node".into(), "a".into()),
                ("__name__".into(), "up".into()),
            ],
            samples: vec![(1000, 1.0)],
        }];
        let bytes = encode(&series);
        // WriteRequest.timeseries (field 1, length-delimited) ...
        assert_eq!(bytes[0], 0x0a);
        // ... whose first label is __name__="up": Label{ name=1 "__name__", value=2 "up" }.
        let label = [&[0x0a, 8][..], b"__name__", &[0x12, 2], b"up"].concat();
        assert_eq!(&bytes[2..4], &[0x0a, label.len() as u8]);
        assert_eq!(&bytes[4..4 + label.len()], &label[..]);
        // The sample: value 1.0 as a fixed64, timestamp 1000 as a varint (0xe8 0x07).
        let sample = [&[0x09][..], &1.0f64.to_le_bytes(), &[0x10, 0xe8, 0x07]].concat();
        assert!(bytes.windows(sample.len()).any(|w| w == &sample[..]));
    }

    #[test]
    fn snappy_literals_carry_their_length_in_the_tag() {
        assert_eq!(snappy(b"abc"), [3, 2 << 2, b'a', b'b', b'c']);
        let long = vec![7u8; 100];
        let block = snappy(&long);
        assert_eq!(&block[..3], &[100, 60 << 2, 99]);
        assert_eq!(block.len(), 3 + 100);
        let big = vec![1u8; 70_000];
        let block = snappy(&big);
        // 70000 as a varint, then a 65536-byte literal and a 4464-byte one.
        assert_eq!(&block[..3], &[0xf0, 0xa2, 0x04]);
        assert_eq!(&block[3..6], &[61 << 2, 0xff, 0xff]);
        assert_eq!(block.len(), 3 + 3 + 65_536 + 3 + 4_464);
    }
}
