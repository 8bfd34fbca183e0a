//! Malformed startup packets (or something in their place).

use super::*;

fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A StartupMessage (or something in its place) that is wrong in one way.
pub(super) fn startup(rng: &mut Rng) -> Vec<Step> {
    let good = [("user", "app"), ("database", "postgres")];
    let bytes = match rng.below(11) {
        0 => vec![0, 0, 0, 4],
        1 => vec![0, 0, 0, 2, 0, 3],
        2 => {
            let mut b = vec![0x00, 0x01, 0x00, 0x00];
            b.extend(vec![0; 12]);
            b
        }
        3 => startup_packet(0x0002_0000, &good),
        4 => startup_packet(0x0003_0000, &[("database", "postgres")]),
        5 => {
            let mut b = startup_packet(0x0003_0000, &good);
            b.truncate(4 + rng.below(b.len() - 4));
            b
        }
        6 => {
            let mut b = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
            b.extend_from_slice(&rng.next().to_be_bytes());
            b
        }
        7 => vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 4],
        8 => startup_packet(0x0003_0063, &good),
        9 => startup_packet(0x0003_0000, &[good[0], good[1], ("_pq_.diff", "1")]),
        _ => {
            let mut b = startup_packet(0x0003_0000, &good);
            let n = b.len() - 1;
            b[n] = b'x';
            b
        }
    };
    vec![Step::RawStartup(bytes)]
}
