use super::*;
use crate::replication::ClaimRule;
use crate::tls::{MinVersion, VerifyMode};
use std::path::Path;

fn run(args: &[&str]) -> Result<Config, String> {
    match parse_args(args.iter().map(|s| s.to_string()))? {
        Invocation::Run(config) => Ok(*config),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn authentication_decides_the_protocol_as_memcached_does() {
    use ProtocolChoice::{Ascii, Auto, Binary};
    const SASL: &str = "ERROR: You cannot allow the ASCII protocol while using SASL.";
    const ASCII_AUTH: &str = "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.";
    // (flags, the protocol served or memcached's refusal), as memcached 1.6 starts.
    let table: &[(&[&str], Result<ProtocolChoice, &str>)] = &[
        (&[], Ok(Auto)),
        (&["-B", "ascii"], Ok(Ascii)),
        (&["-S"], Ok(Binary)),
        (&["-S", "-B", "binary"], Ok(Binary)),
        (&["-S", "-B", "ascii"], Err(SASL)),
        (&["-S", "-B", "auto"], Err(SASL)),
        (&["-Y", "/a"], Ok(Ascii)),
        (&["-Y", "/a", "-B", "ascii"], Ok(Ascii)),
        (&["-Y", "/a", "-B", "binary"], Err(ASCII_AUTH)),
        (&["-Y", "/a", "-B", "auto"], Err(ASCII_AUTH)),
        (&["-S", "-Y", "/a"], Ok(Ascii)),
        (&["-Y", "/a", "-S"], Ok(Ascii)),
        (&["-S", "-Y", "/a", "-B", "binary"], Err(ASCII_AUTH)),
        (&["-S", "-Y", "/a", "-B", "ascii"], Err(SASL)),
    ];
    for (flags, expected) in table {
        let mut args = flags.to_vec();
        args.extend(["--sasl-pwdb", "/p"]);
        let got = run(&args).map(|c| c.protocol);
        assert_eq!(got, expected.map_err(String::from), "{flags:?}");
    }
}

#[test]
fn memcached_spellings() {
    let c = run(&["-p", "22000", "-l127.0.0.1,::1", "-t", "2", "-m64", "-M", "-I", "2m", "-c", "10", "-vv"]).unwrap();
    assert_eq!((c.port, c.threads, c.memory_limit, c.no_evict), (22000, 2, 64 << 20, true));
    assert_eq!((c.item_size_max, c.max_connections, c.verbosity), (2 << 20, 10, 2));
    assert_eq!(c.listen, vec!["127.0.0.1", "::1"]);
    let c = run(&["--port=1", "--max-item-size=512k", "--memory-limit", "8", "-U", "0", "-R", "5"]).unwrap();
    assert_eq!((c.port, c.item_size_max, c.memory_limit, c.reqs_per_event), (1, 512 << 10, 8 << 20, 5));
    let c = run(&["-A", "-F", "-C"]).unwrap();
    assert!(c.enable_shutdown && c.disable_flush_all && c.disable_cas);
    let c = run(&["-S", "--sasl-pwdb", "/p", "-Y", "/a"]).unwrap();
    assert!(c.sasl);
    assert_eq!((c.sasl_pwdb.unwrap(), c.auth_file.unwrap()), (PathBuf::from("/p"), PathBuf::from("/a")));
    let c = run(&["-s", "/tmp/m.sock", "-a", "770"]).unwrap();
    assert_eq!((c.unix_socket.unwrap(), c.unix_mask), (PathBuf::from("/tmp/m.sock"), 0o770));
    assert_eq!(run(&[]).unwrap().unix_mask, 0o700);
}

#[test]
fn replication_flags_and_repcached_aliases() {
    let c =
        run(&["--peer", "10.0.0.2:11212", "--repl-secret", "/s", "--repl-listen", "0.0.0.0:11300", "--repl-insecure"])
            .unwrap();
    let r = &c.replication;
    assert_eq!((&r.peers[..], r.listen.as_str()), (&["10.0.0.2:11212".to_string()][..], "0.0.0.0:11300"));
    let c = run(&["-x", "127.0.0.1", "-X", "11400", "--node-id", "9", "--repl-sync", "ack"]).unwrap();
    let r = &c.replication;
    assert_eq!((&r.peers[..], r.listen.as_str()), (&["127.0.0.1:11400".to_string()][..], "127.0.0.1:11400"));
    assert_eq!((r.node_id, r.sync), (Some(9), ReplSync::Ack));
    let c = run(&["--peer", "h:1", "--repl-backlog", "1m", "--repl-timeout", "0.5"]).unwrap();
    assert_eq!((c.replication.backlog, c.replication.timeout), (1 << 20, Duration::from_millis(500)));
    assert_eq!(run(&["-x", "::1"]).unwrap().replication.peers, ["[::1]:11212"]);
    assert_eq!(run(&["--repl-sync", "one"]).unwrap().replication.sync, ReplSync::One);
    // Who judges claims: unset, the rule follows the number of peers.
    let claims = |args: &[&str]| run(args).map(|c| c.replication.claims);
    assert_eq!(claims(&["--peer", "h:1"]).unwrap(), None);
    assert_eq!(claims(&["--repl-claims", "majority"]).unwrap(), Some(ClaimRule::Majority));
    assert_eq!(claims(&["--repl-claims", "local"]).unwrap(), Some(ClaimRule::Local));
    assert_eq!(claims(&["--repl-claims", "all"]).unwrap_err(), "--repl-claims is majority or local, not 'all'");
    assert_eq!((ClaimRule::default_for(1), ClaimRule::default_for(2)), (ClaimRule::Local, ClaimRule::Majority));
}

#[test]
fn derived_node_ids_are_stable_and_differ_by_port() {
    let a = run(&["-p", "11211"]).unwrap();
    let b = run(&["-p", "11311"]).unwrap();
    assert_eq!(a.node_id(), run(&["-p", "11211"]).unwrap().node_id());
    assert_ne!(a.node_id(), b.node_id());
    assert_eq!(run(&["--node-id", "77"]).unwrap().node_id(), 77);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a's published value for \"a\"");
}

#[test]
fn unsafe_replication_is_refused() {
    let open = run(&["--peer", "h:1", "--repl-listen", "0.0.0.0:11212"]).unwrap_err();
    assert!(open.contains("--repl-tls-cert"), "{open}");
    let clear = run(&["--peer", "h:1", "--repl-listen", "0.0.0.0:11212", "--repl-insecure"]).unwrap_err();
    assert!(clear.contains("--repl-secret"), "{clear}");
    let tls = ["--repl-tls-cert", "/c", "--repl-tls-key", "/k", "--repl-tls-ca", "/ca"];
    let c = run(&[&["--peer", "h:1", "--repl-listen", "0.0.0.0:11212"][..], &tls].concat()).unwrap();
    let files = c.replication.tls.unwrap();
    assert_eq!((files.cert, files.key, files.ca), ("/c".into(), "/k".into(), "/ca".into()));
    assert!(run(&["--repl-tls-cert", "/c"]).unwrap_err().contains("go together"));
    assert!(run(&["--peer", "h:1", "-C"]).unwrap_err().contains("-C"));
    assert!(run(&["--peer", "h:1", "-x", "h"]).is_err());
    // A mesh: --peer repeated, or a list, and the two mixed; each address once.
    let peers = |args: &[&str]| run(args).map(|c| c.replication.peers);
    assert_eq!(peers(&["--peer", "h:1", "--peer", "g:1"]).unwrap(), ["h:1", "g:1"]);
    assert_eq!(peers(&["--peer", "h:1,g:1", "--peer", "f:1"]).unwrap(), ["h:1", "g:1", "f:1"]);
    assert_eq!(peers(&["--peer", "h:1", "--peer", "h:1"]).unwrap_err(), "--peer h:1 is given twice");
    assert_eq!(peers(&["--peer", "h:1,g:1,h:1"]).unwrap_err(), "--peer h:1 is given twice");
    assert_eq!(peers(&["--peer", "h:1,,g:1"]).unwrap_err(), "--peer 'h:1,,g:1': an empty address in the list");
    assert!(run(&["--node-id", "4096"]).is_err());
    assert!(run(&["--repl-sync", "sometimes"]).is_err());
    assert!(run(&["--repl-timeout", "0"]).is_err());
    assert!(run(&["--peer", "h:1", "--repl-listen", "nonsense"]).is_err());
}

#[test]
fn refusals_say_why() {
    assert!(run(&["-U", "11211"]).unwrap_err().contains("only 0"));
    assert!(run(&["-t", "0"]).is_err());
    assert!(run(&["-I", "512"]).is_err());
    assert!(run(&["-m", "1", "-I", "1m"]).unwrap_err().contains("1/2"));
    assert!(run(&["--bogus"]).is_err());
    assert!(run(&["-p"]).is_err());
    assert!(matches!(parse_args(["-h".to_string()]), Ok(Invocation::Help)));
    assert!(run(&["-B", "udp"]).is_err());
    assert!(run(&["-a", "800"]).unwrap_err().contains("octal"));
    assert!(run(&["-a", "1777"]).is_err());
}

#[test]
fn protect_prefix_repeats_and_refuses_an_empty_prefix() {
    let c = run(&["--protect-prefix", "memc.sess.key.", "--protect-prefix=lock:"]).unwrap();
    assert_eq!(c.protected_prefixes, ["memc.sess.key.", "lock:"]);
    assert!(run(&["--protect-prefix="]).unwrap_err().contains("--protect-prefix"));
}

#[test]
fn tls_options_in_memcacheds_spelling() {
    let c = run(&[
        "-Z",
        "-o",
        "ssl_chain_cert=/c.pem,ssl_key=/k.pem,ssl_ca_cert=/ca.pem,ssl_verify_mode=3,ssl_min_version=tlsv1.3",
        "-o",
        "ssl_wbuf_size=32,ssl_session_cache,ssl_ciphers=HIGH,ssl_keyformat=1",
        "-l",
        "notls:127.0.0.1:11311,127.0.0.1",
    ])
    .unwrap();
    let tls = &c.tls;
    assert!(tls.enabled);
    assert_eq!((tls.chain_cert.as_deref(), tls.key.as_deref()), (Some(Path::new("/c.pem")), Some(Path::new("/k.pem"))));
    assert_eq!((tls.verify_mode, tls.min_version, tls.wbuf_size), (VerifyMode::Once, MinVersion::Tls13, 32 << 10));
    assert_eq!(tls.ciphers.as_deref(), Some("HIGH"));
    assert_eq!(split_notls(&c.listen[0]), (true, "127.0.0.1:11311"));
    assert_eq!(run(&["-o", "ssl_min_version=2"]).unwrap().tls.min_version, MinVersion::Tls12);
}

#[test]
fn every_memcached_extended_option_is_accepted_and_unknown_ones_refused() {
    // memcached 1.6.18's `-o` options (`memcached -h`), with values as a start
    // script would give them.
    let all = "maxconns_fast,hashpower=16,tail_repair_time=0,hash_algorithm=murmur3,no_lru_crawler,\
               lru_crawler_sleep=100,lru_crawler_tocrawl=0,read_buf_mem_limit=0,no_lru_maintainer,\
               hot_lru_pct=20,warm_lru_pct=40,hot_max_factor=0.2,warm_max_factor=2.0,temporary_ttl=61,\
               idle_timeout=600,slab_chunk_max=524288,watcher_logbuf_size=256,worker_logbuf_size=64,\
               track_sizes,no_hashexpand,modern,no_modern,sock_cookie_id=0,ext_path=/tmp/x:64m,\
               ext_page_size=64,ext_wbuf_size=8,ext_threads=1,ext_item_size=512,ext_item_age=0,\
               ext_low_ttl=0,ext_drop_unread,ext_recache_rate=2000,ext_compact_under=0,ext_drop_under=0,\
               ext_max_frag=0.8,ext_max_sleep=1000000,slab_automove_freeratio=0.01,slab_reassign,\
               slab_automove=1,lru_crawler,lru_maintainer,ssl_session_cache,ssl_kernel_tls";
    let c = run(&["-o", all]).unwrap();
    assert_eq!(c.idle_timeout, Duration::from_secs(600));
    assert!(c.notes.iter().any(|n| n.starts_with("-o hashpower=16: ")), "{:?}", c.notes);
    // A note for each of the 43 but the four honoured here (maxconns_fast,
    // idle_timeout, ssl_session_cache, ssl_kernel_tls).
    assert_eq!(c.notes.len(), 39, "{:#?}", c.notes);
    assert_eq!(run(&["-o", "modern,bogus"]).unwrap_err(), "Illegal suboption \"bogus\"");
    assert!(run(&["-o", "idle_timeout=x"]).is_err());
    let c = run(&["-L", "-f", "1.25", "-n", "48", "-D", ":", "-k", "-r", "-d", "-P", "/p", "-u", "nobody"]).unwrap();
    assert_eq!(c.notes.len(), 4);
    let s = &c.service;
    assert!(s.daemonize && s.lock_memory && s.core_dumps);
    assert_eq!((s.pid_file.as_deref(), s.user.as_deref()), (Some(Path::new("/p")), Some("nobody")));
    assert!(run(&["-f", "1"]).is_err());
}

#[test]
fn tls_refusals_use_memcacheds_words() {
    assert_eq!(run(&["-o", "bogus=1"]).unwrap_err(), "Illegal suboption \"bogus=1\"");
    assert_eq!(
        run(&["-o", "ssl_verify_mode=4"]).unwrap_err(),
        "Invalid ssl_verify_mode. Use help to see valid options."
    );
    assert_eq!(run(&["-o", "ssl_min_version=9"]).unwrap_err(), "could not parse argument to ssl_min_version");
    assert!(run(&["-o", "ssl_min_version=1"]).unwrap_err().contains("not supported"));
    assert!(run(&["-o", "ssl_keyformat=2"]).unwrap_err().contains("PEM"));
    assert!(run(&["-Z"]).unwrap_err().contains("ssl_chain_cert"));
    assert!(run(&["--tls-handshake-timeout", "0"]).is_err());
}

#[test]
fn aspnet_listen_takes_the_notls_prefix() {
    let c = run(&["--aspnet-listen", "notls:127.0.0.1:42424"]).unwrap();
    assert_eq!(split_notls(c.aspnet.listen.as_deref().unwrap()), (true, "127.0.0.1:42424"));
    let refused = run(&["--aspnet-listen", "notls:10.0.0.1:42424"]).unwrap_err();
    assert!(refused.contains("no authentication"), "{refused}");
    assert!(run(&["--aspnet-listen", "notls:nowhere"]).unwrap_err().contains("not an ADDR:PORT"));
}

#[test]
fn repl_wait_sync_takes_seconds() {
    let c = run(&["--peer", "h:1", "--repl-wait-sync", "2.5"]).unwrap();
    assert_eq!(c.replication.wait_sync, Duration::from_millis(2500));
    assert!(run(&["--repl-wait-sync=-1"]).is_err());
}
