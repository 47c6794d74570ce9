use super::boundary::*;
use super::*;
use StickStatus::*;
use std::sync::Arc;

fn open() -> *mut Stickless {
    let mut handle = std::ptr::null_mut();
    // SAFETY: NULL options ask for the defaults; `handle` is writable.
    assert_eq!(unsafe { stickless_open(std::ptr::null(), &mut handle) }, STICKLESS_OK as i32);
    handle
}

fn set(handle: *mut Stickless, key: &[u8], value: &[u8]) -> i32 {
    // SAFETY: an open handle and two live slices.
    unsafe { stickless_set(handle, key.as_ptr().cast(), key.len(), value.as_ptr().cast(), value.len(), 0, 0) }
}

/// The status and value of a get of `key` (values of 64 bytes at most).
fn get(handle: *mut Stickless, key: &[u8]) -> (i32, Vec<u8>) {
    let mut buf = [0u8; 64];
    let mut len = 0;
    // SAFETY: an open handle, a live key, `buf` and `len` writable; NULL outs.
    let status = unsafe {
        stickless_get(
            handle,
            key.as_ptr().cast(),
            key.len(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut len,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (status, buf[..len.min(buf.len())].to_vec())
}

/// The last error of this thread, or the status that said there is none.
fn last_error() -> Result<String, i32> {
    let mut buf = [0u8; 512];
    let mut len = 0;
    // SAFETY: `buf` holds `buf.len()` writable bytes; `len` is writable.
    let status = unsafe { stickless_last_error(buf.as_mut_ptr().cast(), buf.len(), &mut len) };
    if status != STICKLESS_OK as i32 {
        return Err(status);
    }
    Ok(String::from_utf8(buf[..len].to_vec()).unwrap())
}

#[test]
fn a_panic_inside_an_export_is_caught_and_the_store_stays_usable() {
    let handle = open();
    PANIC_IN_NEXT_CALL.with(|panic| panic.set(true));
    assert_eq!(set(handle, b"k", b"v"), STICKLESS_PANIC as i32);
    let message = last_error().expect("a message");
    assert!(message.contains("forced by a test"), "{message}");
    assert_eq!(set(handle, b"k", b"v"), STICKLESS_OK as i32);
    assert_eq!(last_error(), Err(STICKLESS_NOT_FOUND as i32), "a call clears the last error");
    assert_eq!(get(handle, b"k"), (STICKLESS_OK as i32, b"v".to_vec()));
    // SAFETY: the handle is open and not used again.
    unsafe { stickless_close(handle) };
}

/// A panic inside replication code poisons the lock it held (the backlog's, as a
/// panic while a change is recorded would). The store still serves: the next
/// writes through the ABI are recorded in an emptied backlog, as a poisoned
/// store shard is emptied and used.
#[test]
fn a_panic_inside_replication_leaves_the_store_usable() {
    let handle = open();
    let args = b"-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0";
    // SAFETY: an open handle and a live argument string.
    assert_eq!(unsafe { stickless_serve(handle, args.as_ptr().cast(), args.len()) }, STICKLESS_OK as i32);
    assert_eq!(set(handle, b"before", b"1"), STICKLESS_OK as i32);
    // SAFETY: the handle is open until the end of this test.
    let embedded = unsafe { &*handle };
    let replicator = Arc::clone(embedded.inner.node().replicator().expect("serving with --repl-listen replicates"));
    let held = Arc::clone(&replicator);
    let panicked = std::thread::spawn(move || {
        let _backlog = held.backlog();
        panic!("a panic inside replication, forced by a test");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(set(handle, b"after", b"2"), STICKLESS_OK as i32);
    assert_eq!(get(handle, b"after"), (STICKLESS_OK as i32, b"2".to_vec()));
    let backlog = replicator.backlog();
    assert_eq!((backlog.first_seq(), backlog.last_seq()), (2, 2), "emptied, its sequence going on");
    drop(backlog);
    // SAFETY: the handle is open and not used again.
    unsafe { stickless_close(handle) };
}

#[test]
fn a_refused_serve_says_why() {
    let handle = open();
    let args = b"-p 0 --no-such-flag";
    // SAFETY: an open handle and a live argument string.
    let status = unsafe { stickless_serve(handle, args.as_ptr().cast(), args.len()) };
    assert_eq!(status, STICKLESS_BAD_CONFIG as i32);
    let message = last_error().expect("a message");
    assert!(message.contains("--no-such-flag"), "{message}");
    // A buffer too short gets the length, as for values.
    let mut len = 0;
    // SAFETY: NULL with length 0 asks for the length alone; `len` is writable.
    let status = unsafe { stickless_last_error(std::ptr::null_mut(), 0, &mut len) };
    assert_eq!((status, len), (STICKLESS_BUFFER_TOO_SMALL as i32, message.len()));
    // SAFETY: the handle is open and not used again.
    unsafe { stickless_close(handle) };
}

#[test]
fn every_status_has_its_name_and_codes_decode_to_the_abi_enums() {
    for status in StickStatus::ALL {
        // SAFETY: stickless_result_str returns a static NUL-terminated string.
        let name = unsafe { std::ffi::CStr::from_ptr(stickless_result_str(status as i32)) };
        assert_eq!(name.to_str().unwrap(), format!("{status:?}"));
        assert_eq!(StickStatus::try_from(status as i32), Ok(status));
    }
    // SAFETY: as above.
    let unknown = unsafe { std::ffi::CStr::from_ptr(stickless_result_str(42)) };
    assert_eq!(unknown.to_str().unwrap(), "STICKLESS_UNKNOWN");
    assert_eq!(StickStoreMode::try_from(6), Ok(StickStoreMode::STICKLESS_CAS));
    assert_eq!(StickStoreMode::try_from(0), Err(0));
    assert_eq!(StickPortKind::try_from(1), Ok(StickPortKind::STICKLESS_PORT_REPLICATION));
    assert_eq!(StickPortKind::try_from(2), Err(2));
}
