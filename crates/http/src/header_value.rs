//! Header values written once: text formatted on the stack and copied into the value, so that a
//! value built per request costs one allocation (its own), not two (a `String` and the copy).
use std::fmt;

use axum::http::HeaderValue;

/// Bytes written on the stack before falling back to a `String`.
const STACK: usize = 256;

/// A fixed buffer on the stack that refuses text beyond its size.
struct StackText {
    buf: [u8; STACK],
    len: usize,
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The header value `write` writes (called a second time, into a `String`, when the text is
/// longer than the stack buffer); `None` when the text is not a valid header value or `write`
/// fails.
pub fn written(write: impl Fn(&mut dyn fmt::Write) -> fmt::Result) -> Option<HeaderValue> {
    let mut stack = StackText {
        buf: [0; STACK],
        len: 0,
    };
    if write(&mut stack).is_ok() {
        return HeaderValue::from_bytes(&stack.buf[..stack.len]).ok();
    }
    let mut text = String::new();
    write(&mut text).ok()?;
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_values_and_invalid_text() {
        let ip: std::net::IpAddr = "203.0.113.9".parse().expect("ip");
        let v = written(|w| write!(w, "for={ip};proto={}", 80 / 8)).expect("value");
        assert_eq!(v, "for=203.0.113.9;proto=10");
        let long = "a".repeat(STACK * 3);
        let v = written(|w| {
            w.write_str(&long)?;
            w.write_str(", b")
        })
        .expect("value");
        assert_eq!(v.as_bytes().len(), STACK * 3 + 3);
        assert!(v.to_str().expect("text").ends_with("a, b"));
        assert!(written(|w| w.write_str("bad\r\nvalue")).is_none());
        assert_eq!(written(|w| w.write_str("")).expect("empty"), "");
    }
}
