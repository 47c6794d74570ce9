//! Feeds arbitrary bytes to the ASP.NET State Server request parser as a connection
//! reads them: requests from the front, until one is incomplete or malformed. Checks
//! that none panics, each request makes progress within the buffer, a request parses
//! the same from its own bytes alone, and every response to it encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stickless::protocol::aspnet::{self, StateItem, StateParse, StateResponse};

/// Small enough that the fuzzer reaches the body limit.
const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < data.len() {
        let rest = &data[pos..];
        match aspnet::parse(rest, MAX_BODY) {
            StateParse::Request { request, consumed } => {
                assert!(consumed > 0 && consumed <= rest.len(), "progress within the buffer");
                assert!(request.body.len() <= MAX_BODY, "the body limit holds");
                match aspnet::parse(&rest[..consumed], MAX_BODY) {
                    StateParse::Request { request: alone, consumed: again } => {
                        assert_eq!((alone, again), (request, consumed), "a request is self-contained");
                    }
                    other => panic!("a request parsed differently from its own bytes: {other:?}"),
                }
                let item = StateItem {
                    timeout_minutes: 20,
                    body: request.body,
                    lock_cookie: request.lock_cookie,
                    uninitialized: true,
                };
                for response in [StateResponse::Ok(Some(item)), StateResponse::NotFound, StateResponse::BadRequest] {
                    out.clear();
                    aspnet::encode(&response, request.method == aspnet::Method::Head, request.close, &mut out);
                    assert!(out.starts_with(b"HTTP/1.1 "), "a status line");
                }
                pos += consumed;
            }
            StateParse::Bad { consumed: Some(consumed), .. } => {
                assert!(consumed > 0 && consumed <= rest.len(), "a skipped request is within the buffer");
                pos += consumed;
            }
            StateParse::Bad { consumed: None, .. } | StateParse::Incomplete => break,
        }
    }
});
