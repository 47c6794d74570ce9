//! Feeds arbitrary bytes to every authentication path: `-Y`'s text exchange as a
//! connection reads it, SASL messages in binary packets, and the credentials file,
//! checking that none panics, each makes progress, and no unauthenticated request
//! makes a connection wait for more than a token's worth of bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stickless::protocol::binary::{self, BinaryCommand};
use stickless::protocol::text::AUTH_TOKEN_MAX;
use stickless::protocol::{Command, Limits, ParseError, parse_auth};
use stickless::server::frontend::auth::Credentials;

fuzz_target!(|data: &[u8]| {
    let Some((&path, data)) = data.split_first() else {
        return;
    };
    let credentials = Credentials::parse(b"alice:wonderland\nbob:pa:ss\n").expect("a valid file");
    match path % 3 {
        0 => {
            let mut pos = 0;
            while pos < data.len() {
                let rest = &data[pos..];
                match parse_auth(rest) {
                    Ok(parsed) => {
                        assert!(parsed.consumed > 0 && parsed.consumed <= rest.len(), "progress within the buffer");
                        if let Command::Authenticate { user, password } = parsed.cmd {
                            let _ = credentials.check(user, password);
                        }
                        pos += parsed.consumed + parsed.swallow;
                    }
                    Err(ParseError::Incomplete { need }) => {
                        if let Some(total) = need {
                            assert!(total > rest.len(), "asks for more only when short");
                            let line = rest.iter().position(|&b| b == b'\n').expect("a line was read") + 1;
                            assert!(total <= line + AUTH_TOKEN_MAX as usize + 2, "waits for at most a token");
                        }
                        break;
                    }
                    Err(ParseError::Close) => break,
                }
            }
        }
        1 => {
            let limits = Limits { item_size_max: 1 << 20, cas_enabled: true };
            let mut pos = 0;
            while pos < data.len() {
                let rest = &data[pos..];
                match binary::parse(rest, &limits) {
                    Ok(parsed) => {
                        assert!(parsed.consumed > 0 && parsed.consumed <= rest.len(), "progress within the buffer");
                        if let BinaryCommand::SaslAuth { data, .. } | BinaryCommand::SaslStep { data, .. } = parsed.cmd {
                            let _ = credentials.check_plain(data);
                        }
                        pos += parsed.consumed + parsed.swallow;
                    }
                    Err(_) => break,
                }
            }
        }
        _ => {
            if let Ok(parsed) = Credentials::parse(data) {
                let half = data.len() / 2;
                let _ = parsed.check(&data[..half], &data[half..]);
                let _ = parsed.check_plain(data);
            }
        }
    }
});
