//! The rows of pgroute's own statements, read in place (the only DataRows pgroute decodes).

use super::{Event, ExpectKind};
use crate::backend::view::Lsn;

/// A row answering pgroute's own statements: the LSN capture, or parameters read back.
pub(super) fn own_row(kind: &ExpectKind, frame: &[u8], events: &mut Vec<Event>) {
    match kind {
        ExpectKind::CaptureLsn => {
            let first = columns(frame).into_iter().next().flatten();
            if let Some(lsn) = first.as_deref().and_then(Lsn::parse) {
                events.push(Event::Lsn(lsn));
            }
        }
        ExpectKind::ReadParams(names) => {
            let values = columns(frame).into_iter().chain(std::iter::repeat(None));
            events.push(Event::ParamValues(
                names.iter().cloned().zip(values).collect(),
            ));
        }
        _ => {}
    }
}

/// Every column of a DataRow frame as text (None for NULL or non-UTF-8).
fn columns(frame: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let Some(body) = frame.get(5..) else {
        return out;
    };
    let count = body
        .get(..2)
        .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]));
    let mut rest = body.get(2..).unwrap_or_default();
    for _ in 0..count.max(0) {
        let Some(len) = rest
            .get(..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            break;
        };
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
            continue;
        }
        let Some(value) = rest.get(..len as usize) else {
            break;
        };
        out.push(std::str::from_utf8(value).ok().map(str::to_owned));
        rest = &rest[len as usize..];
    }
    out
}
