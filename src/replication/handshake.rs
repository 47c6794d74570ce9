//! Who may replicate: each side sends a `Hello` with its protocol version, cluster
//! name, node id and a random challenge, and answers the other's challenge with
//! HMAC-SHA-256 over it, keyed by the shared secret (`--repl-secret`). Anything else
//! is refused with a reason for the log, and nothing of the cache is sent before
//! both proofs check out: repcached handed its whole cache to any connection and
//! stored whatever `rep` lines it was sent (replication-lessons finding 7).
//!
//! Without a secret (a loopback-only pair) the proofs use an empty key: the exchange
//! still refuses a stranger that does not speak it, and a node with a secret never
//! accepts one without.

use super::wire::{Frame, NONCE_LEN, PROTOCOL_VERSION};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted: 128 bits, as hex or text.
pub const SECRET_MIN_LEN: usize = 16;

/// What this node proves and checks.
#[derive(Clone)]
pub struct Identity {
    pub node: u16,
    pub cluster: Vec<u8>,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Identity").field("node", &self.node).field("cluster", &self.cluster).finish()
    }
}

/// The file's permission bits when its group or others may read it.
fn loose_permissions(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

impl Identity {
    pub fn new(node: u16, cluster: &[u8], secret: &[u8]) -> Identity {
        Identity { node, cluster: cluster.to_vec(), secret: secret.to_vec() }
    }

    /// Reads `--repl-secret`: the file's content without its trailing newline.
    pub fn load_secret(path: &Path) -> Result<Vec<u8>, String> {
        let mut secret =
            std::fs::read(path).map_err(|e| format!("cannot read the replication secret {}: {e}", path.display()))?;
        while secret.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            secret.pop();
        }
        if secret.len() < SECRET_MIN_LEN {
            return Err(format!("the replication secret in {} is shorter than {SECRET_MIN_LEN} bytes", path.display()));
        }
        if let Some(mode) = loose_permissions(path) {
            log::warn!(
                "the replication secret {} can be read by other users (mode {mode:04o}): chmod 600 it",
                path.display()
            );
        }
        Ok(secret)
    }

    /// Our `Hello`, with a fresh challenge for the peer, the run of our change
    /// sequence, and our clock.
    pub fn hello<'a>(&'a self, nonce: [u8; NONCE_LEN], history: u64, clock_ms: u64) -> Frame<'a> {
        Frame::Hello { protocol: PROTOCOL_VERSION, node: self.node, history, clock_ms, cluster: &self.cluster, nonce }
    }

    /// The proof that we hold the secret: HMAC over the peer's challenge and our id,
    /// so a proof cannot be replayed for the other direction.
    pub fn prove(&self, their_nonce: &[u8; NONCE_LEN]) -> [u8; NONCE_LEN] {
        mac(&self.secret, their_nonce, self.node)
    }

    /// Checks the peer's `Hello`; the error is the reason to log.
    pub fn check_hello(&self, frame: &Frame<'_>) -> Result<PeerHello, String> {
        let Frame::Hello { protocol, node, history, clock_ms, cluster, nonce } = *frame else {
            return Err(format!("expected a hello, got {}", frame_name(frame)));
        };
        if protocol != PROTOCOL_VERSION {
            return Err(format!("peer speaks replication protocol {protocol}, this node {PROTOCOL_VERSION}"));
        }
        if cluster != self.cluster.as_slice() {
            return Err(format!(
                "peer belongs to cluster '{}', this node to '{}'",
                String::from_utf8_lossy(cluster),
                String::from_utf8_lossy(&self.cluster)
            ));
        }
        if node == self.node {
            return Err(format!("peer has this node's id {node}: give one of them another --node-id"));
        }
        Ok(PeerHello { node, nonce, history, clock_ms })
    }

    /// Checks the peer's proof against the challenge we sent it.
    pub fn check_auth(&self, frame: &Frame<'_>, peer: &PeerHello, our_nonce: &[u8; NONCE_LEN]) -> Result<(), String> {
        let Frame::Auth { mac: proof } = frame else {
            return Err(format!("expected the peer's proof, got {}", frame_name(frame)));
        };
        let mut check = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        check.update(our_nonce);
        check.update(&peer.node.to_be_bytes());
        // verify_slice compares in constant time.
        check.verify_slice(proof).map_err(|_| "the peer's proof does not match: wrong --repl-secret".to_string())
    }
}

/// What the peer's `Hello` told us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHello {
    pub node: u16,
    pub nonce: [u8; NONCE_LEN],
    pub history: u64,
    pub clock_ms: u64,
}

fn mac(secret: &[u8], nonce: &[u8; NONCE_LEN], node: u16) -> [u8; NONCE_LEN] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(nonce);
    mac.update(&node.to_be_bytes());
    mac.finalize().into_bytes().into()
}

fn frame_name(frame: &Frame<'_>) -> &'static str {
    match frame {
        Frame::Hello { .. } => "a hello",
        Frame::Auth { .. } => "a proof",
        Frame::Resume { .. } => "a resume",
        Frame::Set { .. }
        | Frame::Claim { .. }
        | Frame::Delete { .. }
        | Frame::Flush { .. }
        | Frame::Counter { .. } => "a change",
        Frame::Refuse { .. } => "a refusal",
        Frame::Propose { .. } | Frame::Resolve { .. } => "a claim",
        Frame::CaughtUp { .. } => "a sync marker",
        Frame::SyncBegin { .. } | Frame::SyncEnd { .. } => "a sync marker",
        Frame::Ping { .. } | Frame::Pong { .. } => "a heartbeat",
        Frame::Ack { .. } | Frame::Skip { .. } => "an ack",
    }
}

/// A challenge from the kernel's random source.
pub fn fresh_nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    let mut filled = 0;
    while filled < NONCE_LEN {
        // SAFETY: getrandom(2) writes at most the given length into the buffer,
        // which is valid and writable from `filled` to its end.
        let n = unsafe { libc::getrandom(nonce[filled..].as_mut_ptr().cast(), NONCE_LEN - filled, 0) };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-pair";

    /// Runs both sides' checks; returns each side's verdict.
    fn meet(a: &Identity, b: &Identity) -> (Result<(), String>, Result<(), String>) {
        let (nonce_a, nonce_b) = (fresh_nonce().unwrap(), fresh_nonce().unwrap());
        let side = |me: &Identity, my_nonce, their: &Identity, their_nonce| -> Result<(), String> {
            let peer = me.check_hello(&their.hello(their_nonce, 7, 0))?;
            let proof = Frame::Auth { mac: their.prove(&my_nonce) };
            me.check_auth(&proof, &peer, &my_nonce)
        };
        (side(a, nonce_a, b, nonce_b), side(b, nonce_b, a, nonce_a))
    }

    #[test]
    fn peers_with_the_secret_accept_each_other() {
        let (a, b) = (Identity::new(1, b"c", SECRET), Identity::new(2, b"c", SECRET));
        assert_eq!(meet(&a, &b), (Ok(()), Ok(())));
    }

    #[test]
    fn strangers_are_refused_with_a_reason() {
        let a = Identity::new(1, b"c", SECRET);
        let wrong = meet(&a, &Identity::new(2, b"c", b"another secret of length")).0.unwrap_err();
        assert!(wrong.contains("--repl-secret"), "{wrong}");
        let none = meet(&a, &Identity::new(2, b"c", b"")).0.unwrap_err();
        assert!(none.contains("--repl-secret"), "a peer without the secret: {none}");
        assert!(meet(&a, &Identity::new(2, b"other", SECRET)).0.unwrap_err().contains("cluster"));
        assert!(meet(&a, &Identity::new(1, b"c", SECRET)).0.unwrap_err().contains("--node-id"));
        let old = Frame::Hello {
            protocol: PROTOCOL_VERSION + 1,
            node: 2,
            history: 1,
            clock_ms: 0,
            cluster: b"c",
            nonce: [0; NONCE_LEN],
        };
        assert!(a.check_hello(&old).unwrap_err().contains("protocol"));
        let early = Frame::Set { seq: 1, version: 1, flags: 0, expires_ms: 0, key: b"k", value: b"v" };
        assert!(a.check_hello(&early).unwrap_err().contains("a change"), "data before the handshake");
    }

    #[test]
    fn a_proof_is_bound_to_the_challenge_and_the_prover() {
        let (a, b) = (Identity::new(1, b"c", SECRET), Identity::new(2, b"c", SECRET));
        let (nonce, other) = ([1; NONCE_LEN], [2; NONCE_LEN]);
        let peer = PeerHello { node: 2, nonce: [0; NONCE_LEN], history: 1, clock_ms: 0 };
        let replayed = Frame::Auth { mac: b.prove(&other) };
        assert!(a.check_auth(&replayed, &peer, &nonce).is_err(), "a proof for another challenge");
        let reflected = Frame::Auth { mac: a.prove(&nonce) };
        assert!(a.check_auth(&reflected, &peer, &nonce).is_err(), "our own proof sent back");
    }

    #[test]
    fn secrets_are_read_without_their_newline_and_must_be_long() {
        let dir = std::env::temp_dir().join(format!("stickless-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, b"0123456789abcdef\n").unwrap();
        assert_eq!(Identity::load_secret(&good).unwrap(), b"0123456789abcdef");
        let short = dir.join("short");
        std::fs::write(&short, b"tiny\n").unwrap();
        assert!(Identity::load_secret(&short).unwrap_err().contains("shorter"));
        assert!(Identity::load_secret(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!format!("{:?}", Identity::new(1, b"c", SECRET)).contains("0123"), "Debug hides the secret");
    }
}
