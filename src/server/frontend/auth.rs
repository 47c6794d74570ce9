//! Credentials for SASL PLAIN (binary protocol, `-S`) and for text-protocol
//! authentication (`-Y`): a file of `user:password` lines, as memcached's authfile.c
//! and its `MEMCACHED_SASL_PWDB` file read them.

use std::path::Path;

/// The users and passwords of one file.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Credentials {
    /// Reads a file of `user:password` lines; blank lines are skipped.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Credentials::parse(&text).map_err(|line| format!("{}: line {line} is not user:password", path.display()))
    }

    /// Parses the file's contents; the error is the 1-based number of a bad line.
    pub fn parse(text: &[u8]) -> Result<Credentials, usize> {
        let mut entries = Vec::new();
        for (index, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = line.iter().position(|&b| b == b':').ok_or(index + 1)?;
            let (user, password) = (&line[..colon], &line[colon + 1..]);
            if user.is_empty() {
                return Err(index + 1);
            }
            entries.push((user.to_vec(), password.to_vec()));
        }
        Ok(Credentials { entries })
    }

    /// True when `user` exists with `password`. Every entry is compared in full, so
    /// the time taken does not tell which part was wrong.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let mut found = false;
        for (u, p) in &self.entries {
            found |= constant_time_eq(u, user) & constant_time_eq(p, password);
        }
        found
    }

    /// SASL PLAIN's message: `authzid NUL authcid NUL passwd` (RFC 4616).
    pub fn check_plain(&self, message: &[u8]) -> bool {
        let mut parts = message.splitn(3, |&b| b == 0);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(_authzid), Some(user), Some(password)) => self.check(user, password),
            _ => false,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_plain_messages() {
        let creds = Credentials::parse(b"alice:secret\r\n\nbob:pa:ss\n").unwrap();
        assert!(creds.check(b"alice", b"secret"));
        assert!(creds.check(b"bob", b"pa:ss"));
        assert!(!creds.check(b"alice", b"secreT"));
        assert!(!creds.check(b"carol", b""));
        assert!(creds.check_plain(b"\0alice\0secret"));
        assert!(creds.check_plain(b"alice\0alice\0secret"));
        assert!(!creds.check_plain(b"alice\0secret"));
        assert_eq!(Credentials::parse(b"alice:x\nnocolon\n").unwrap_err(), 2);
    }
}
