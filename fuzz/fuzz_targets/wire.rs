//! Kernel input from the network: multipart messages through
//! `wire::decode` (signature check, JSON parsing), and raw ZMTP bytes through
//! the listener's frame scanner.
//!
//! Input layout: byte 0 selects the mode; the rest is split into frames at
//! `0xFF 0x00` pairs. Half of the signed cases get a correct signature, so
//! the JSON paths behind the check are reached with signing on. Properties:
//! nothing panics; a decoded message encodes and decodes again to the same
//! message; a message never decodes with a wrong signature.
#![no_main]

use bytes::Bytes;
use ciao::kernel::guard::FrameScanner;
use ciao::kernel::wire::{self, DELIMITER, Signer};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-key-0123456789";

fn frames(data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] == 0x00 {
            out.push(Bytes::copy_from_slice(&data[start..i]));
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(Bytes::copy_from_slice(&data[start.min(data.len())..]));
    out
}

fn check_decoded(frames: Vec<Bytes>, signer: &Signer) {
    if let Ok(msg) = wire::decode(frames, signer) {
        let again = wire::decode(wire::encode(&msg, signer), signer).expect("an encoded message decodes");
        assert_eq!(again.header.msg_id, msg.header.msg_id);
        assert_eq!(again.msg_type(), msg.msg_type());
        assert_eq!(again.content, msg.content);
        assert_eq!(again.identities, msg.identities);
        assert_eq!(again.buffers, msg.buffers);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            // Raw bytes as a client would send them to a listener, in two pieces.
            let mut s = FrameScanner::default();
            let cut = usize::from(mode) % (rest.len() + 1);
            let _ = s.scan(&rest[..cut]).and_then(|()| s.scan(&rest[cut..]));
        }
        1 => check_decoded(frames(rest), &Signer::new(b"")),
        2 => {
            let signer = Signer::new(KEY);
            let f = frames(rest);
            // Whatever the signature frame holds, it is not the right one
            // (the chance of a fuzzer forging HMAC-SHA256 is nil), so a
            // decode must fail whenever the four JSON frames are there.
            let at = f.iter().position(|x| x.as_ref() == DELIMITER);
            let complete = at.is_some_and(|a| f.len() >= a + 6);
            let forged = at.is_some_and(|a| f.len() > a + 1 && {
                let json: Vec<&[u8]> = f[a + 2..(a + 6).min(f.len())].iter().map(|b| b.as_ref()).collect();
                json.len() == 4 && signer.sign(&[json[0], json[1], json[2], json[3]]).as_bytes() == f[a + 1].as_ref()
            });
            let decoded = wire::decode(f, &signer);
            if complete && !forged {
                assert!(decoded.is_err(), "an unsigned message was accepted");
            }
        }
        _ => {
            // Sign correctly, so parsing runs behind the check.
            let signer = Signer::new(KEY);
            let mut f = frames(rest);
            if let Some(a) = f.iter().position(|x| x.as_ref() == DELIMITER)
                && f.len() >= a + 6
            {
                let sig = {
                    let j: Vec<&[u8]> = f[a + 2..a + 6].iter().map(|b| b.as_ref()).collect();
                    signer.sign(&[j[0], j[1], j[2], j[3]])
                };
                f[a + 1] = Bytes::from(sig);
            }
            check_decoded(f, &signer);
        }
    }
});
