//! Reassembly of fragmented messages with incremental UTF-8 checks: an
//! invalid text message fails as soon as the bad byte arrives (1007), not
//! after the last fragment.

use crate::proto::ws::frame::{close, Fail, OP_BINARY, OP_CONT, OP_TEXT};

#[derive(Debug, Default)]
pub struct Assembler {
    /// Opcode of the message being assembled (text or binary), if any.
    opcode: Option<u8>,
    data: Vec<u8>,
    /// Bytes of `data` already known to be valid UTF-8.
    checked: usize,
}

/// A complete data message.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub text: bool,
    pub data: Vec<u8>,
}

impl Assembler {
    pub fn in_progress(&self) -> bool {
        self.opcode.is_some()
    }

    /// Adds one data frame's (unmasked) payload. Returns the message when
    /// `fin` completes it.
    pub fn push(&mut self, opcode: u8, fin: bool, payload: &[u8], max_message: usize) -> Result<Option<Message>, Fail> {
        match (opcode, self.opcode) {
            (OP_CONT, None) => return Err(Fail::new(close::PROTOCOL, "continuation frame without a message")),
            (OP_TEXT | OP_BINARY, Some(_)) => {
                return Err(Fail::new(close::PROTOCOL, "new message inside a fragmented one"))
            }
            (OP_TEXT | OP_BINARY, None) => {
                self.opcode = Some(opcode);
                self.data.clear();
                self.checked = 0;
            }
            _ => {}
        }
        if self.data.len() + payload.len() > max_message {
            return Err(Fail::new(close::TOO_BIG, "message too large"));
        }
        self.data.extend_from_slice(payload);
        let text = self.opcode == Some(OP_TEXT);
        if text {
            match std::str::from_utf8(&self.data[self.checked..]) {
                Ok(_) => self.checked = self.data.len(),
                Err(e) => {
                    // An incomplete sequence at the end may finish in the next fragment.
                    if e.error_len().is_some() || fin {
                        return Err(Fail::new(close::INVALID_DATA, "text message is not valid UTF-8"));
                    }
                    self.checked += e.valid_up_to();
                }
            }
        }
        if !fin {
            return Ok(None);
        }
        self.opcode = None;
        Ok(Some(Message { text, data: std::mem::take(&mut self.data) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_and_utf8() {
        let mut a = Assembler::default();
        assert_eq!(a.push(OP_TEXT, false, "h€".as_bytes()[..2].as_ref(), 100), Ok(None));
        assert_eq!(a.push(OP_CONT, false, &"h€".as_bytes()[2..], 100), Ok(None));
        let m = a.push(OP_CONT, true, b"!", 100).unwrap().unwrap();
        assert_eq!((m.text, m.data.as_slice()), (true, "h€!".as_bytes()));
        assert!(!a.in_progress());
        // A byte that can never be valid fails at once.
        assert_eq!(a.push(OP_TEXT, false, &[b'a', 0xFF], 100).unwrap_err().code, close::INVALID_DATA);
        let mut a = Assembler::default();
        assert_eq!(
            a.push(OP_TEXT, true, &[0xE2, 0x82], 100).unwrap_err().code,
            close::INVALID_DATA,
            "truncated at the end"
        );
        let mut a = Assembler::default();
        assert_eq!(a.push(OP_CONT, true, b"x", 100).unwrap_err().code, close::PROTOCOL);
        let mut a = Assembler::default();
        a.push(OP_BINARY, false, b"x", 100).unwrap();
        assert_eq!(a.push(OP_TEXT, true, b"y", 100).unwrap_err().code, close::PROTOCOL);
        let mut a = Assembler::default();
        a.push(OP_BINARY, false, &[0; 60], 100).unwrap();
        assert_eq!(a.push(OP_CONT, true, &[0; 60], 100).unwrap_err().code, close::TOO_BIG);
    }
}
