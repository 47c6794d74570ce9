//! Every request of the corpus, cut at every byte offset into two reads, parses to the
//! same commands as when it arrives whole: incomplete input is never an error.

mod common;

use stickless::protocol::{Limits, ParseError, parse};

/// Parses as a connection does: commands from the front, swallowing rejected data.
/// Returns the commands (as text) and the bytes left unparsed.
fn parse_all(buf: &[u8], limits: &Limits, swallow: &mut usize, out: &mut Vec<String>) -> usize {
    let mut pos = 0;
    loop {
        if *swallow > 0 {
            let n = (*swallow).min(buf.len() - pos);
            pos += n;
            *swallow -= n;
            if *swallow > 0 {
                return pos;
            }
        }
        match parse(&buf[pos..], limits) {
            Ok(parsed) => {
                assert!(parsed.consumed > 0 && parsed.consumed <= buf.len() - pos, "progress within the buffer");
                out.push(format!("{:?}", parsed.cmd));
                pos += parsed.consumed;
                *swallow = parsed.swallow;
            }
            Err(ParseError::Incomplete { need }) => {
                assert!(need.is_none_or(|total| total > buf.len() - pos), "asks for more only when short");
                return pos;
            }
            Err(ParseError::Close) => {
                out.push("<close>".into());
                return buf.len();
            }
        }
    }
}

fn commands_in_two_reads(bytes: &[u8], cut: usize, limits: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    let mut swallow = 0;
    let used = parse_all(&bytes[..cut], limits, &mut swallow, &mut out);
    let mut rest = bytes[used..cut].to_vec();
    if used < cut && out.last().is_some_and(|c| c == "<close>") {
        return out;
    }
    rest.extend_from_slice(&bytes[cut..]);
    parse_all(&rest, limits, &mut swallow, &mut out);
    out
}

#[test]
fn every_cut_parses_the_same() {
    let limits = Limits::default();
    let mut checked = 0;
    for case in common::corpus::all() {
        let bytes = case.bytes();
        // Cutting a megabyte value at every offset adds nothing over cutting small ones.
        if bytes.len() > 4096 {
            continue;
        }
        let whole = commands_in_two_reads(&bytes, bytes.len(), &limits);
        for cut in 0..bytes.len() {
            let split = commands_in_two_reads(&bytes, cut, &limits);
            assert_eq!(split, whole, "case '{}' cut at byte {cut}", case.name);
        }
        checked += 1;
    }
    assert!(checked > 300, "only {checked} cases were small enough to cut");
}

/// The in-suite share of fuzzing: deterministic mutations of every corpus case (byte
/// flips, insertions of protocol-significant bytes, truncations) must parse without
/// panicking and with progress. `scripts/fuzz` runs the coverage-guided fuzzer.
#[test]
fn mutated_corpus_parses_safely() {
    let limits = Limits { item_size_max: 4096, cas_enabled: true };
    let mut mutator = common::Mutator::new(0x2545_F491_4F6C_DD1D, b" \r\n\x0009-\xff");
    for case in common::corpus::all() {
        let original = case.bytes();
        if original.len() > 4096 {
            continue;
        }
        for _ in 0..40 {
            parse_all(&mutator.mutate(&original), &limits, &mut 0, &mut Vec::new());
        }
    }
}

/// Writes every corpus case to `$STICKLESS_SEED_DIR` as a fuzzing seed
/// (`scripts/fuzz` runs it); does nothing without the variable.
#[test]
fn export_fuzz_seeds() {
    let Ok(dir) = std::env::var("STICKLESS_SEED_DIR") else { return };
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in common::corpus::all().iter().enumerate() {
        std::fs::write(format!("{dir}/case-{i:04}"), case.bytes()).unwrap();
    }
}
