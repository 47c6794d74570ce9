//! The store-nothing ceiling: a memcached text-protocol server that keeps no
//! items. It answers every `get` with a value as long as the last `set` was (the
//! load generator checks lengths, never contents) and every `set` with `STORED`,
//! from one thread, as `-t 1` servers do. What a real server costs beyond it is
//! what its store, its expiry and its protocol coverage cost: the figure a cache
//! cannot beat on this machine.
//!
//! The load generator's binary runs it when started as `loadgen --serve-nothing
//! -l ADDR -p PORT` (other memcached flags are accepted and ignored).

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(usize::MAX);
/// Read in slices of this size (memcached's own read buffer starts at 16 KiB).
const READ_SLICE: usize = 16 * 1024;

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
}

/// Serves until killed. `args` are the memcached-style flags after `--serve-nothing`.
pub fn serve(args: &[String]) -> ! {
    let mut host = "127.0.0.1".to_string();
    let mut port = "11211".to_string();
    let mut at = 0;
    while at < args.len() {
        match args[at].as_str() {
            "-l" => host = args.get(at + 1).cloned().unwrap_or_default(),
            "-p" => port = args.get(at + 1).cloned().unwrap_or_default(),
            "-Z" => {
                eprintln!("the store-nothing server speaks plain TCP only");
                std::process::exit(64);
            }
            _ => {}
        }
        at += if args[at].starts_with('-') && at + 1 < args.len() && !args[at + 1].starts_with('-') { 2 } else { 1 };
    }
    let addr: SocketAddr =
        format!("{}:{port}", host.split(',').next().unwrap_or("127.0.0.1")).parse().unwrap_or_else(|e| {
            eprintln!("bad -l/-p: {e}");
            std::process::exit(64);
        });
    if let Err(e) = run(addr) {
        eprintln!("store-nothing server: {e}");
        std::process::exit(71);
    }
    std::process::exit(0)
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: slab::Slab<Conn> = slab::Slab::new();
    let mut events = Events::with_capacity(256);
    let mut value: Vec<u8> = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key());
                            poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                            entry.insert(Conn { stream, input: Vec::new(), output: Vec::new(), written: 0 });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else { continue };
            if serve_conn(conn, &mut value).is_err() {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Reads what arrived, answers every complete request, writes what it can. An
/// error (or the peer's close) ends the connection.
fn serve_conn(conn: &mut Conn, value: &mut Vec<u8>) -> io::Result<()> {
    let mut closed = false;
    let mut slice = [0u8; READ_SLICE];
    loop {
        match conn.stream.read(&mut slice) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => conn.input.extend_from_slice(&slice[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let consumed = answer(&conn.input, &mut conn.output, value)?;
    conn.input.drain(..consumed);
    while conn.written < conn.output.len() {
        match conn.stream.write(&conn.output[conn.written..]) {
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if conn.written == conn.output.len() {
        conn.output.clear();
        conn.written = 0;
    }
    if closed { Err(io::ErrorKind::UnexpectedEof.into()) } else { Ok(()) }
}

/// Answers the complete requests at the start of `input`; returns the bytes used.
fn answer(input: &[u8], output: &mut Vec<u8>, value: &mut Vec<u8>) -> io::Result<usize> {
    let mut at = 0;
    while let Some(eol) = memchr::memmem::find(&input[at..], b"\r\n") {
        let line = &input[at..at + eol];
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        match words.next() {
            Some(b"get" | b"gets") => {
                for key in words {
                    output.extend_from_slice(b"VALUE ");
                    output.extend_from_slice(key);
                    output.extend_from_slice(b" 0 ");
                    output.extend_from_slice(itoa::Buffer::new().format(value.len()).as_bytes());
                    output.extend_from_slice(b"\r\n");
                    output.extend_from_slice(value);
                    output.extend_from_slice(b"\r\n");
                }
                output.extend_from_slice(b"END\r\n");
                at += eol + 2;
            }
            Some(b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas") => {
                // key flags exptime bytes [cas] [noreply]
                let (mut length, mut last) = (None, None);
                for (index, word) in words.enumerate() {
                    if index == 3 {
                        length = std::str::from_utf8(word).ok().and_then(|b| b.parse::<usize>().ok());
                    }
                    last = Some(word);
                }
                let bytes = length.ok_or_else(|| io::Error::other("a storage command without its length"))?;
                let end = at + eol + 2 + bytes + 2;
                if input.len() < end {
                    break;
                }
                value.resize(bytes, b'x');
                if last != Some(&b"noreply"[..]) {
                    output.extend_from_slice(b"STORED\r\n");
                }
                at = end;
            }
            Some(b"version") => {
                output.extend_from_slice(b"VERSION store-nothing\r\n");
                at += eol + 2;
            }
            Some(b"quit") => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => {
                output.extend_from_slice(b"ERROR\r\n");
                at += eol + 2;
            }
        }
    }
    Ok(at)
}
