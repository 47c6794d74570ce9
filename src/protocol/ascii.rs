//! The ASCII protocol's front door: one line from the read buffer, tokenised once,
//! goes to the classic text parser ([`super::text`]) or the meta parser
//! ([`super::meta`]) by its verb. The two parsers share the command vocabulary
//! ([`command`](super::command)) and the tokenizer ([`tokens`](super::tokens)) and
//! know nothing of each other.

use super::command::{Command, Limits, ParseError, Parsed};
use super::meta::{self, MetaLine};
use super::reply::ErrorReply;
use super::text;
use super::tokens::{LINE_LIMIT, MULTIGET_LINE_LIMIT, Tokens, memchr};

/// Parses one command from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    let Some(newline) = memchr(b'\n', buf) else {
        return Err(incomplete_line(buf));
    };
    let mut line = &buf[..newline];
    // memcached strips a '\r' before the '\n' only when the line has another byte.
    if line.len() > 1 && line[line.len() - 1] == b'\r' {
        line = &line[..line.len() - 1];
    }
    // The C code treats the line as a string: it ends at the first NUL.
    if let Some(nul) = memchr(0, line) {
        line = &line[..nul];
    }
    let line_len = newline + 1;
    let toks = Tokens::new(line);
    let simple = |cmd| Ok(Parsed { cmd, consumed: line_len, swallow: 0 });
    let error = |reply, noreply| simple(Command::Error { reply, noreply });

    let nt = toks.ntokens();
    let verb = toks.get(0);
    if nt < 2 || verb.len() < 2 {
        return error(ErrorReply::Error, false);
    }

    match verb {
        b"mn" => simple(Command::MetaNoop),
        b"mg" | b"ms" | b"md" | b"ma" | b"me" => {
            let m = MetaLine::new(line, nt, |i| toks.get(i));
            match verb {
                b"mg" => meta::parse_get(&m, line_len),
                b"ms" => meta::parse_set(buf, &m, line_len, limits),
                b"md" => meta::parse_delete(&m, line_len),
                b"ma" => meta::parse_arithmetic(&m, line_len),
                _ => meta::parse_debug(&m, line_len),
            }
        }
        _ => text::parse_classic(buf, line, line_len, &toks, limits),
    }
}

/// No newline yet: wait, or close when the line is too long to be a command.
fn incomplete_line(buf: &[u8]) -> ParseError {
    if buf.len() <= LINE_LIMIT {
        return ParseError::Incomplete { need: None };
    }
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    let is_multiget = rest.starts_with(b"get ") || rest.starts_with(b"gets ");
    if spaces > 100 || !is_multiget || buf.len() > MULTIGET_LINE_LIMIT {
        ParseError::Close
    } else {
        ParseError::Incomplete { need: None }
    }
}
