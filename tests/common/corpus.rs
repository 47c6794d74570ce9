//! The request corpus: hand-written cases from `tests/corpus/text.txt` plus a
//! generated matrix of every command against every kind of bad input.
//!
//! File syntax, one case per `## name` heading:
//! - `> bytes` is a step: its bytes are sent, then the replies are read to the sentinel;
//! - `>> bytes` is sent on its own with no wait (to split a request across packets);
//! - `>| bytes` is sent, then the reply is read until the server closes;
//! - escapes: `\r \n \t \0 \\ \xNN`, `{text*N}` repeats `text` N times, and `{cas}`
//!   stands for the last CAS unique this connection was sent in a `VALUE` line.

use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Bytes(Vec<u8>),
    /// The most recent CAS unique seen on this connection.
    Cas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `>`: read up to the sentinel's reply.
    Sentinel,
    /// `>>`: send only.
    Nothing,
    /// `>|`: read until the server closes the connection.
    Close,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub pieces: Vec<Piece>,
    pub wait: Wait,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub steps: Vec<Step>,
}

impl Step {
    /// The bytes to send, with `{cas}` replaced.
    pub fn render(&self, cas: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::Cas => out.extend_from_slice(cas.to_string().as_bytes()),
            }
        }
        out
    }
}

impl Case {
    /// All request bytes of the case, with a fixed stand-in for `{cas}`.
    pub fn bytes(&self) -> Vec<u8> {
        self.steps.iter().flat_map(|s| s.render(12345)).collect()
    }
}

fn unescape(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut cur = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let next = bytes[i + 1];
                i += 2;
                match next {
                    b'r' => cur.push(b'\r'),
                    b'n' => cur.push(b'\n'),
                    b't' => cur.push(b'\t'),
                    b'0' => cur.push(0),
                    b'\\' => cur.push(b'\\'),
                    b'{' => cur.push(b'{'),
                    b'x' => {
                        let hex = std::str::from_utf8(&bytes[i..i + 2]).unwrap();
                        cur.push(u8::from_str_radix(hex, 16).expect("\\xNN"));
                        i += 2;
                    }
                    other => panic!("unknown escape \\{}", other as char),
                }
            }
            b'{' => {
                let close = text[i..].find('}').expect("unclosed {") + i;
                let inner = &text[i + 1..close];
                if inner == "cas" {
                    pieces.push(Piece::Bytes(std::mem::take(&mut cur)));
                    pieces.push(Piece::Cas);
                } else {
                    let (what, count) = inner.rsplit_once('*').expect("{text*N}");
                    let count: usize = count.parse().expect("repeat count");
                    for _ in 0..count {
                        cur.extend_from_slice(what.as_bytes());
                    }
                }
                i = close + 1;
            }
            b => {
                cur.push(b);
                i += 1;
            }
        }
    }
    pieces.push(Piece::Bytes(cur));
    pieces.retain(|p| p != &Piece::Bytes(Vec::new()));
    pieces
}

/// Parses the corpus file format.
pub fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            cases.push(Case { name: name.trim().to_string(), steps: Vec::new() });
        } else if let Some((marker, rest)) = line.split_once(' ').filter(|(m, _)| [">", ">>", ">|"].contains(m)) {
            let wait = match marker {
                ">" => Wait::Sentinel,
                ">>" => Wait::Nothing,
                _ => Wait::Close,
            };
            cases.last_mut().expect("a step before any case").steps.push(Step { pieces: unescape(rest), wait });
        } else {
            assert!(line.is_empty() || line.starts_with('#'), "corpus line not understood: {line}");
        }
    }
    cases
}

/// The hand-written cases: classic text commands, then meta commands.
pub fn handwritten() -> Vec<Case> {
    let mut cases = parse(include_str!("../corpus/text.txt"));
    cases.extend(parse(include_str!("../corpus/meta.txt")));
    cases
}

fn case(name: String, steps: &[&str]) -> Case {
    let line = |s: &str| if s.ends_with("\\r\\n") { s.to_string() } else { format!("{s}\\r\\n") };
    let steps = steps.iter().map(|s| Step { pieces: unescape(&line(s)), wait: Wait::Sentinel }).collect();
    Case { name, steps }
}

/// The generated matrix: each storage command against each malformed header, each
/// arithmetic starting value against each delta, each exptime form, with and without
/// `noreply`, each followed by a read of what was stored.
pub fn generated() -> Vec<Case> {
    let mut cases = Vec::new();
    let storage = ["set", "add", "replace", "append", "prepend"];
    // (label, header after the verb, data block)
    let headers: &[(&str, &str, &str)] = &[
        ("plain", "k 5 0 3", "abc\\r\\n"),
        ("flags max", "k 4294967295 0 1", "x\\r\\n"),
        ("flags over 32 bits", "k 4294967296 0 1", "x\\r\\n"),
        ("negative flags", "k -1 0 1", "x\\r\\n"),
        ("flags not a number", "k x 0 1", "x\\r\\n"),
        ("exptime not a number", "k 0 x 1", "x\\r\\n"),
        ("bytes not a number", "k 0 0 x", "x\\r\\n"),
        ("negative bytes", "k 0 0 -1", "x\\r\\n"),
        ("bytes with junk", "k 0 0 1x", "x\\r\\n"),
        ("too few tokens", "k 0 0", ""),
        ("too many tokens", "k 0 0 1 noreply extra", "x\\r\\n"),
        ("key of 250", "{k*250} 0 0 1", "x\\r\\n"),
        ("key of 251", "{k*251} 0 0 1", "x\\r\\n"),
        ("long data chunk", "k 0 0 1", "xyz\\r\\n"),
        ("short data chunk", "k 0 0 3", "x\\r\\n"),
        ("data without crlf", "k 0 0 2", "xy\\n\\n"),
        ("empty value", "k 0 0 0", "\\r\\n"),
        ("tab in key", "k\\tk 0 0 1", "x\\r\\n"),
        ("trailing space", "k 0 0 1 ", "x\\r\\n"),
        ("bytes with tab suffix", "k 0 0 1\\t", "x\\r\\n"),
    ];
    for verb in storage {
        for (label, header, data) in headers {
            for noreply in [false, true] {
                for exists in [false, true] {
                    if exists && !matches!(*label, "plain" | "long data chunk" | "key of 251" | "negative bytes") {
                        continue;
                    }
                    let nr = if noreply { " noreply" } else { "" };
                    let setup = if exists { "set k 1 0 3\\r\\nold\\r\\n" } else { "" };
                    let name = format!(
                        "{verb} {label}{}{}",
                        if noreply { " noreply" } else { "" },
                        if exists { " over an existing key" } else { "" }
                    );
                    let request = format!("{setup}{verb} {header}{nr}\\r\\n{data}");
                    cases.push(case(name, &[&request, "get k k\\tk", "gets {k*250}"]));
                }
            }
        }
    }
    let starts = [
        "0",
        "1",
        "9",
        "10",
        "99",
        "100",
        "18446744073709551615",
        "18446744073709551614",
        "abc",
        " 5",
        "5 ",
        "-1",
        "-0",
        "007",
        "1.5",
        "12abc",
        "+3",
        "",
    ];
    let deltas = ["0", "1", "2", "18446744073709551615", "-1", "x", "1x"];
    for start in starts {
        for delta in ["1", "18446744073709551615"] {
            for verb in ["incr", "decr"] {
                let set = format!("set n 0 0 {}\\r\\n{start}\\r\\n", start.len());
                cases
                    .push(case(format!("{verb} {delta} on {start:?}"), &[&set, &format!("{verb} n {delta}"), "get n"]));
            }
        }
    }
    for delta in deltas {
        for noreply in ["", " noreply"] {
            cases.push(case(
                format!("incr delta {delta:?}{noreply}"),
                &["set n 0 0 2\\r\\n10\\r\\n", &format!("incr n {delta}{noreply}"), "get n"],
            ));
        }
    }
    let exptimes =
        ["0", "-1", "-2147483648", "100", "2592000", "2592001", "1000000000", "2000000000", "4294967297", "x"];
    for exptime in exptimes {
        cases.push(case(
            format!("set with exptime {exptime}"),
            &[&format!("set e 0 {exptime} 1\\r\\ne\\r\\n"), "get e"],
        ));
        cases.push(case(
            format!("touch with exptime {exptime}"),
            &["set e 0 0 1\\r\\ne\\r\\n", &format!("touch e {exptime}"), "get e"],
        ));
        cases.push(case(
            format!("gat with exptime {exptime}"),
            &["set e 0 0 1\\r\\ne\\r\\n", &format!("gat {exptime} e missing"), "get e"],
        ));
        cases.push(case(
            format!("gats with exptime {exptime}"),
            &["set e 0 0 1\\r\\ne\\r\\n", &format!("gats {exptime} e"), "gets e"],
        ));
        cases.push(case(
            format!("flush_all {exptime}"),
            &["set e 0 0 1\\r\\ne\\r\\n", &format!("flush_all {exptime}"), "get e"],
        ));
    }
    let mut text = String::new();
    for i in 0..24 {
        let _ = write!(text, " k{i}");
    }
    cases.push(case(
        "get of 24 keys".into(),
        &["set k3 0 0 1\\r\\n3\\r\\nset k23 0 0 2\\r\\n23\\r\\n", &format!("get{text}"), &format!("gets{text} k3")],
    ));
    cases
}

/// Every case, hand-written first.
pub fn all() -> Vec<Case> {
    let mut cases = handwritten();
    cases.extend(generated());
    cases
}
