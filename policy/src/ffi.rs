//! The plain-export face for wasmtime: an ABI version, allocate/free, and one JSON-in/JSON-out
//! export per entry point. A result is returned as `(ptr << 32) | len`.
//!
//! ABI 2: an entry point takes its input buffer (from `granted_alloc`) and frees it; its answer
//! stays readable until the next entry-point call into the same instance, which frees it. So one
//! step costs the host two calls into the module (`granted_alloc`, the entry point), not four.

use crate::api;

/// The ABI version hosts check before anything else.
#[no_mangle]
pub extern "C" fn granted_abi_version() -> u32 {
    api::ABI_VERSION
}

/// Allocates `len` bytes for the host to write an input into.
#[no_mangle]
pub extern "C" fn granted_alloc(len: u32) -> u32 {
    let buffer = vec![0u8; len as usize].into_boxed_slice();
    Box::into_raw(buffer) as *mut u8 as u32
}

/// Frees `len` bytes at `ptr` from `granted_alloc` that were not handed to an entry point.
///
/// # Safety
/// `ptr` and `len` must come from `granted_alloc`, and be freed once.
#[no_mangle]
pub unsafe extern "C" fn granted_free(ptr: u32, len: u32) {
    if ptr == 0 {
        return;
    }
    let slice = core::ptr::slice_from_raw_parts_mut(ptr as *mut u8, len as usize);
    // SAFETY: the caller returns a buffer this module boxed with exactly this length.
    drop(unsafe { Box::from_raw(slice) });
}

fn call(entry: &str, ptr: u32, len: u32) -> u64 {
    let last_answer = &crate::arena::page_mates().last_answer;
    drop(last_answer.take());
    let input: Box<[u8]> = if len == 0 || ptr == 0 {
        Box::default()
    } else {
        let slice = core::ptr::slice_from_raw_parts_mut(ptr as *mut u8, len as usize);
        // SAFETY: the host wrote `len` bytes at `ptr`, a buffer from `granted_alloc` of exactly
        // that length, and hands it over with this call (ABI 2).
        unsafe { Box::from_raw(slice) }
    };
    let output = api::call(entry, &input).into_boxed_slice();
    drop(input);
    let out_len = output.len() as u64;
    let out_ptr = output.as_ptr() as u32 as u64;
    last_answer.set(Some(output));
    (out_ptr << 32) | out_len
}

macro_rules! entry_points {
    ($($export:ident => $name:literal),* $(,)?) => {$(
        #[doc = concat!("The `", $name, "` entry point: JSON in at `ptr`/`len`, JSON out.")]
        #[no_mangle]
        pub extern "C" fn $export(ptr: u32, len: u32) -> u64 {
            call($name, ptr, len)
        }
    )*};
}

entry_points! {
    granted_info => "info",
    granted_token => "token",
    granted_token_start => "token_start",
    granted_token_resume => "token_resume",
    granted_authorization => "authorization",
    granted_userinfo => "userinfo",
    granted_revocation => "revocation",
    granted_introspection => "introspection",
    granted_preview => "preview",
    granted_eligibility => "eligibility",
    granted_app_status => "app_status",
    granted_pbkdf2 => "pbkdf2",
    granted_hash_password => "hash_password",
    granted_hash_client_secret => "hash_client_secret",
    granted_new_client_secret => "new_client_secret",
    granted_identity_provider => "identity_provider",
}
