//! Feeds arbitrary bytes to the text parser as a connection would, checking that it
//! never panics, always makes progress, and asks for more input only when it needs it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stickless::protocol::{Limits, ParseError, parse};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { item_size_max: 4096, cas_enabled: true };
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        match parse(rest, &limits) {
            Ok(parsed) => {
                assert!(parsed.consumed > 0 && parsed.consumed <= rest.len(), "progress within the buffer");
                pos += parsed.consumed + parsed.swallow;
            }
            Err(ParseError::Incomplete { need }) => {
                if let Some(total) = need {
                    assert!(total > rest.len(), "asks for more only when short");
                }
                break;
            }
            Err(ParseError::Close) => break,
        }
    }
});
