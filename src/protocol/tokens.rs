//! Lines and tokens of the ASCII protocols, as memcached's `tokenize_command`
//! (proto_text.c) makes them: only the space character separates tokens, and at
//! most 23 tokens count towards a command's arity.

/// A line without a newline after this many bytes closes the connection, unless it
/// is a multi-get, which may keep growing (proto_text.c `try_read_command_ascii`).
pub const LINE_LIMIT: usize = 2048;

/// How far a multi-get line may grow before we give up on it. memcached lets it grow
/// without bound; we cap it so one client cannot take all memory.
pub const MULTIGET_LINE_LIMIT: usize = 16 * 1024 * 1024;

/// memcached's `MAX_TOKENS`: the tokenizer fills at most 23 tokens plus a terminal.
const MAX_TOKENS: usize = 24;

/// Tokens of one line, as `tokenize_command` makes them.
pub struct Tokens<'a> {
    tokens: [&'a [u8]; MAX_TOKENS - 1],
    /// Real tokens seen (at most 23).
    pub count: usize,
}

impl<'a> Tokens<'a> {
    pub fn new(line: &'a [u8]) -> Self {
        let mut tokens: [&'a [u8]; MAX_TOKENS - 1] = [&[]; MAX_TOKENS - 1];
        let mut count = 0;
        let mut start = 0;
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                if start != i {
                    tokens[count] = &line[start..i];
                    count += 1;
                    if count == MAX_TOKENS - 1 {
                        return Tokens { tokens, count };
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        if start != i {
            tokens[count] = &line[start..i];
            count += 1;
        }
        Tokens { tokens, count }
    }

    /// memcached's `ntokens`: real tokens plus the terminal one.
    pub fn ntokens(&self) -> usize {
        self.count + 1
    }

    /// Token `i`, or the empty terminal token past the end.
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.count { self.tokens[i] } else { &[] }
    }

    /// memcached `set_noreply_maybe`: the last real token is exactly `noreply`.
    pub fn noreply(&self) -> bool {
        self.count >= 1 && self.tokens[self.count - 1] == b"noreply"
    }
}

#[inline]
pub fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}
