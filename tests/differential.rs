//! The differential test: every case of the corpus goes to Debian's memcached and to
//! stickless, and the replies must be byte-identical after [`normalize`].

mod common;

use common::corpus::{self, Case, Wait};
use common::{Client, Memcached, show, start_stickless};
use std::collections::HashMap;
use std::net::SocketAddr;

/// The one place that says what may legitimately differ between the two servers:
/// - the version string after `VERSION `;
/// - CAS uniques: each distinct unique becomes `#n`, numbered by first appearance in
///   the case, so equal uniques stay equal and different ones stay different; they
///   appear in `VALUE` lines, as the `c` return flag of meta replies and as `cas=`
///   in `me` replies.
///
/// Everything else (values, flags, lengths, errors, order) must match exactly.
fn normalize(reply: &[u8], uniques: &mut HashMap<Vec<u8>, usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    let mut rest = reply;
    while !rest.is_empty() {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").map_or(rest.len(), |p| p + 2);
        let line = &rest[..line_end];
        rest = &rest[line_end..];
        if line.starts_with(b"VERSION ") {
            out.extend_from_slice(b"VERSION <version>\r\n");
            continue;
        }
        if let Some(header) = line.strip_prefix(b"VALUE ").and_then(|h| h.strip_suffix(b"\r\n")) {
            let fields: Vec<&[u8]> = header.split(|&b| b == b' ').collect();
            let bytes: usize =
                std::str::from_utf8(fields[fields.len().min(3) - 1]).ok().and_then(|b| b.parse().ok()).unwrap_or(0);
            out.extend_from_slice(b"VALUE ");
            if fields.len() == 4 {
                let next = uniques.len();
                let id = *uniques.entry(fields[3].to_vec()).or_insert(next);
                out.extend_from_slice(&[fields[0], fields[1], fields[2]].join(&b' '));
                out.extend_from_slice(format!(" #{id}\r\n").as_bytes());
            } else {
                out.extend_from_slice(header);
                out.extend_from_slice(b"\r\n");
            }
            // The data block is copied verbatim, whatever it contains.
            let data_len = (bytes + 2).min(rest.len());
            out.extend_from_slice(&rest[..data_len]);
            rest = &rest[data_len..];
            continue;
        }
        if let Some(len) = meta_value_len(line) {
            out.extend_from_slice(&normalize_meta_line(line, uniques));
            // The data block is copied verbatim, whatever it contains.
            let data_len = (len + 2).min(rest.len());
            out.extend_from_slice(&rest[..data_len]);
            rest = &rest[data_len..];
            continue;
        }
        if is_meta_status(line) {
            out.extend_from_slice(&normalize_meta_line(line, uniques));
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// Meta replies whose return flags may carry a CAS.
fn is_meta_status(line: &[u8]) -> bool {
    [&b"HD"[..], b"NS", b"EX", b"NF", b"EN", b"ME ", b"VA "].iter().any(|s| line.starts_with(s))
}

/// The length of the data block that follows a `VA <len> ...` line.
fn meta_value_len(line: &[u8]) -> Option<usize> {
    let rest = line.strip_prefix(b"VA ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Replaces the CAS in `c<cas>` tokens and `cas=<cas>` fields of a meta line.
fn normalize_meta_line(line: &[u8], uniques: &mut HashMap<Vec<u8>, usize>) -> Vec<u8> {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    let tokens: Vec<Vec<u8>> = body
        .split(|&b| b == b' ')
        .enumerate()
        .map(|(i, token)| {
            let (prefix, digits) = if i > 0 && token.len() > 1 && token[0] == b'c' && token[1].is_ascii_digit() {
                (&b"c"[..], &token[1..])
            } else if let Some(d) = token.strip_prefix(b"cas=") {
                (&b"cas="[..], d)
            } else {
                return token.to_vec();
            };
            let next = uniques.len();
            let id = *uniques.entry(digits.to_vec()).or_insert(next);
            [prefix, format!("#{id}").as_bytes()].concat()
        })
        .collect();
    let mut out = tokens.join(&b' ');
    if body.len() < line.len() {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The last CAS unique of a raw reply: from a `VALUE` line, or a meta `c` flag.
fn last_unique(reply: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(reply);
    text.lines()
        .rev()
        .filter_map(|line| {
            if let Some(header) = line.strip_prefix("VALUE ") {
                let fields: Vec<&str> = header.split(' ').collect();
                return (fields.len() == 4).then(|| fields[3].parse().ok()).flatten();
            }
            if !is_meta_status(line.as_bytes()) {
                return None;
            }
            line.split(' ').skip(1).filter_map(|t| t.strip_prefix('c')).find_map(|d| d.parse().ok())
        })
        .next()
}

/// Runs one case on a fresh connection after a flush; returns the normalized replies.
fn run_case(addr: SocketAddr, case: &Case) -> Vec<u8> {
    let mut client = Client::connect(addr);
    assert_eq!(client.step(b"flush_all\r\n"), b"OK\r\n", "flush before {}", case.name);
    let mut uniques = HashMap::new();
    let mut cas = 0;
    let mut out = Vec::new();
    for step in &case.steps {
        let bytes = step.render(cas);
        let reply = match step.wait {
            Wait::Nothing => {
                client.send(&bytes);
                continue;
            }
            Wait::Sentinel => client.step(&bytes),
            Wait::Close => {
                client.send(&bytes);
                client.read_until(b"<never>")
            }
        };
        if let Some(unique) = last_unique(&reply) {
            cas = unique;
        }
        out.extend_from_slice(&normalize(&reply, &mut uniques));
        out.extend_from_slice(b"|");
        if reply.ends_with(b"<closed>") || reply.ends_with(b"<timeout>") {
            break;
        }
    }
    out
}

#[test]
fn replies_match_memcached_byte_for_byte() {
    let cases = corpus::all();
    assert!(cases.len() >= 300, "the corpus has {} cases; at least 300 are required", cases.len());
    let memcached = Memcached::start(&["-t", "4", "-m", "64"]);
    let stickless = start_stickless(4, |_| {});
    let mut failures = Vec::new();
    let only = std::env::var("STICKLESS_CASE").ok();
    for case in cases.iter().filter(|c| only.as_ref().is_none_or(|o| c.name.contains(o.as_str()))) {
        let started = std::time::Instant::now();
        let expected = run_case(memcached.addr, case);
        let middle = started.elapsed();
        let actual = run_case(stickless.local_addr(), case);
        if started.elapsed() > std::time::Duration::from_secs(1) {
            eprintln!("slow case '{}': memcached {middle:?}, total {:?}", case.name, started.elapsed());
        }
        if expected != actual {
            failures.push(format!(
                "case '{}'\n  request:   {}\n  memcached: {}\n  stickless: {}",
                case.name,
                show(&case.bytes()),
                show(&expected),
                show(&actual)
            ));
        }
    }
    stickless.shutdown();
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Cases for servers started with `-F` (no flush_all) and `-C` (no CAS). They begin
/// with their own deletes, since the usual flush before each case is refused.
const NO_FLUSH_NO_CAS: &str = r"
## flush_all refused
> flush_all\r\nflush_all 10\r\nflush_all noreply\r\nstats settings\r\n

## cas uniques read zero
> delete k\r\nset k 0 0 1\r\nx\r\ngets k\r\nmg k c v\r\n

## cas with zero matches
> delete k\r\nset k 0 0 1\r\nx\r\ncas k 0 0 1 0\r\ny\r\ncas k 0 0 1 5\r\nz\r\nget k\r\n

## meta set returns a zero cas
> delete k\r\nms k 1 c\r\nx\r\nms k 1 C0 c\r\ny\r\nmg k v c\r\n

## item size without the cas field
> delete k\r\nset k 0 0 1\r\nx\r\nme k\r\n
";

#[test]
fn flags_f_and_c_match_memcached() {
    let memcached = Memcached::start(&["-t", "2", "-F", "-C"]);
    let stickless = start_stickless(2, |c| {
        c.disable_flush_all = true;
        c.disable_cas = true;
    });
    let mut failures = Vec::new();
    for case in corpus::parse(NO_FLUSH_NO_CAS) {
        let run = |addr: SocketAddr| {
            let mut client = Client::connect(addr);
            let mut out = Vec::new();
            for step in &case.steps {
                let reply = client.step(&step.render(0));
                out.extend(normalize_settings(&reply));
                out.push(b'|');
            }
            out
        };
        let (expected, actual) = (run(memcached.addr), run(stickless.local_addr()));
        if expected != actual {
            failures.push(format!(
                "case '{}'\n  memcached: {}\n  stickless: {}",
                case.name,
                show(&expected),
                show(&actual)
            ));
        }
    }
    stickless.shutdown();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Of a `stats settings` reply, keeps the two lines these flags change.
fn normalize_settings(reply: &[u8]) -> Vec<u8> {
    if !reply.windows(5).any(|w| w == b"STAT ") {
        return reply.to_vec();
    }
    let text = String::from_utf8_lossy(reply);
    text.split_inclusive("\r\n")
        .filter(|l| !l.starts_with("STAT ") || l.contains(" cas_enabled ") || l.contains(" flush_enabled "))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn normalization_keeps_what_matters() {
    let mut uniques = HashMap::new();
    let reply = b"VALUE a 0 3 17\r\nEND\r\nVALUE b 1 1 18\r\nx\r\nVALUE c 0 1 17\r\ny\r\nEND\r\nVERSION 1.6.18\r\n";
    assert_eq!(
        normalize(reply, &mut uniques),
        b"VALUE a 0 3 #0\r\nEND\r\nVALUE b 1 1 #1\r\nx\r\nVALUE c 0 1 #0\r\ny\r\nEND\r\nVERSION <version>\r\n"
    );
    assert_eq!(last_unique(reply), Some(17));
    let meta = b"HD c17 kfoo\r\nVA 2 c18 s2\r\nc9\r\nME k exp=-1 la=0 cas=17 fetch=no\r\n";
    assert_eq!(
        normalize(meta, &mut uniques),
        b"HD c#0 kfoo\r\nVA 2 c#1 s2\r\nc9\r\nME k exp=-1 la=0 cas=#0 fetch=no\r\n"
    );
    assert_eq!(last_unique(b"HD c5 s1\r\n"), Some(5));
}
