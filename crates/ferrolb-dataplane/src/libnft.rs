//! libnftables, the library behind the `nft` command, loaded at run time.
//!
//! Why not run `nft -j -f -` per change: with 10,000 Services programmed, one element update
//! took 10–30 ms that way, most of it the process closing its netlink socket (the kernel waits
//! for an RCU grace period); through one long-lived library context it takes about 0.1 ms.
//! The input is the same JSON the command reads. Loading at run time keeps the speaker
//! runnable without nftables installed when forwarding is off.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};

/// `NFT_CTX_OUTPUT_JSON`: JSON output, and JSON input too (every libnftables version that
/// reads JSON tries it first when this is set).
const OUTPUT_JSON: c_uint = 1 << 4;
/// `NFT_CTX_INPUT_JSON` (libnftables 1.0.7+; optional).
const INPUT_JSON: c_uint = 1 << 1;
const LIBRARY: &str = "libnftables.so.1";

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type BufferOn = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

struct Symbols {
    ctx_free: CtxFree,
    get_output: GetBuffer,
    get_error: GetBuffer,
    run: RunCmd,
}

/// One libnftables context. Not for concurrent use: callers hold it behind `&mut`.
pub struct Nft {
    library: *mut c_void,
    ctx: *mut c_void,
    sym: Symbols,
}

// SAFETY: the context is only used through `&mut self`, one call at a time; libnftables keeps
// no thread-local state.
unsafe impl Send for Nft {}

fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local C string or null.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null dlerror result is a valid C string.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// Looks `name` up in `library` as a function pointer of type `T`.
///
/// # Safety
/// `T` must be the function's true signature.
unsafe fn symbol<T: Copy>(library: *mut c_void, name: &str) -> Result<T, String> {
    let cname = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: library is a live dlopen handle; cname is NUL-terminated.
    let ptr = unsafe { libc::dlsym(library, cname.as_ptr()) };
    if ptr.is_null() {
        return Err(format!("{LIBRARY} has no {name}: {}", dl_error()));
    }
    // SAFETY: the caller names the true signature; function and data pointers have one size here.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&ptr) })
}

impl Nft {
    /// Loads libnftables and opens a context in the calling thread's network namespace.
    pub fn open() -> Result<Nft, String> {
        Nft::open_library(LIBRARY)
    }

    /// [`Nft::open`] from a library of another name.
    pub fn open_library(file: &str) -> Result<Nft, String> {
        let name = CString::new(file).map_err(|e| e.to_string())?;
        // SAFETY: dlopen with a valid C string.
        let library = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if library.is_null() {
            return Err(format!(
                "cannot load {file} ({}); install the nftables package",
                dl_error()
            ));
        }
        let opened = (|| -> Result<Nft, String> {
            // SAFETY: the signatures are libnftables' (nftables/libnftables.h).
            let (ctx_new, output_flags, buffer_output, buffer_error) = unsafe {
                (
                    symbol::<CtxNew>(library, "nft_ctx_new")?,
                    symbol::<SetFlags>(library, "nft_ctx_output_set_flags")?,
                    symbol::<BufferOn>(library, "nft_ctx_buffer_output")?,
                    symbol::<BufferOn>(library, "nft_ctx_buffer_error")?,
                )
            };
            // SAFETY: as above.
            let sym = unsafe {
                Symbols {
                    ctx_free: symbol(library, "nft_ctx_free")?,
                    get_output: symbol(library, "nft_ctx_get_output_buffer")?,
                    get_error: symbol(library, "nft_ctx_get_error_buffer")?,
                    run: symbol(library, "nft_run_cmd_from_buffer")?,
                }
            };
            // SAFETY: NFT_CTX_DEFAULT is 0.
            let ctx = unsafe { ctx_new(0) };
            if ctx.is_null() {
                return Err("nft_ctx_new failed".into());
            }
            // SAFETY: ctx is a live context; these only set flags and buffers.
            unsafe {
                output_flags(ctx, OUTPUT_JSON);
                if let Ok(input_flags) = symbol::<SetFlags>(library, "nft_ctx_input_set_flags") {
                    input_flags(ctx, INPUT_JSON);
                }
                buffer_output(ctx);
                buffer_error(ctx);
            }
            Ok(Nft { library, ctx, sym })
        })();
        if opened.is_err() {
            // SAFETY: library came from dlopen and nothing of it is in use.
            unsafe { libc::dlclose(library) };
        }
        opened
    }

    /// Runs one JSON command document as one transaction; the output on success, nftables'
    /// own error text otherwise.
    pub fn run(&mut self, json: &str) -> Result<String, String> {
        let input = CString::new(json).map_err(|_| "command contains a NUL byte".to_string())?;
        // SAFETY: ctx is live; input is NUL-terminated and outlives the call.
        let rc = unsafe { (self.sym.run)(self.ctx, input.as_ptr()) };
        // Reading a buffer also empties it for the next command.
        let output = self.take(self.sym.get_output);
        let error = self.take(self.sym.get_error);
        if rc == 0 {
            Ok(output)
        } else if error.trim().is_empty() {
            Err(format!("nftables refused the transaction (code {rc})"))
        } else {
            Err(error.trim().to_string())
        }
    }

    fn take(&self, get: GetBuffer) -> String {
        // SAFETY: ctx is live; the buffer is a C string owned by ctx, copied before the next call.
        let ptr = unsafe { get(self.ctx) };
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: non-null buffer pointer from libnftables is NUL-terminated.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        // SAFETY: ctx and library are live and used by nothing else.
        unsafe {
            (self.sym.ctx_free)(self.ctx);
            libc::dlclose(self.library);
        }
    }
}
