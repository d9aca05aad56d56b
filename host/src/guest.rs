//! The policy module under wasmtime: one `Engine`, the module compiled once, an `InstancePre`,
//! the pooling allocator, and a fresh `Store` per request with a memory limit and an epoch
//! deadline. A guest that traps, loops or asks for too much memory is an error value, never a crash.

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{
    Config, Engine, Func, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    ModuleExport, PoolingAllocationConfig, ResourceLimiter, Store, Trap, TypedFunc, ValRaw,
    ValType,
};

/// The ABI this host speaks (`granted_abi_version`).
pub const HOST_ABI_VERSION: u32 = 2;

/// The module built by `cargo xtask wasm`, embedded at build time.
pub static EMBEDDED_POLICY: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../www/pkg/granted_policy_bg.wasm"
));

/// One epoch tick.
const TICK: Duration = Duration::from_millis(5);

/// Limits on every guest call.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// Most instances alive at once (the pooling allocator's slots).
    pub max_instances: u32,
    /// Most linear memory one instance may grow to, in bytes.
    pub memory_limit: usize,
    /// Longest one call may run.
    pub deadline: Duration,
    /// Bytes of each instance slot's memory kept resident between requests and reset with
    /// `memset`, instead of being handed back to the kernel and faulted in again by the next
    /// request. 0: always hand memory back.
    ///
    /// Also the most a reset may `memset`. wasmtime asks `PAGEMAP_SCAN` for the written pages,
    /// but without userfaultfd write-protection the kernel counts every resident page as
    /// written, so a slot resets every page any earlier instance in it touched, up to this
    /// much. Default: 512 KiB, the module's initial memory (a token request touches a small
    /// part of it); with 4 MiB, one instance that had touched many pages made every later
    /// instantiation in its slot twice as slow (measured, see ARCHITECTURE.md).
    pub keep_resident: usize,
    /// A directory where the compiled module is kept, keyed by the module's SHA-256 and the
    /// engine's settings, so that a restart does not compile again. `None`: compile every time.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            max_instances: 128,
            memory_limit: 64 << 20,
            deadline: Duration::from_secs(2),
            keep_resident: 512 << 10,
            cache_dir: None,
        }
    }
}

/// The compiled module from `cache_dir` when it holds one for these bytes and this engine, or
/// compiled now and stored there (best effort: a cache that cannot be written is only slower).
fn compile_cached(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&std::path::Path>,
) -> Result<Module, GuestError> {
    let compile = || Module::new(engine, bytes).map_err(|e| GuestError::Load(format!("{e:#}")));
    let Some(dir) = cache_dir else {
        return compile();
    };
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let path = dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
    // Read into memory rather than mapped: a cache file changed under a running server cannot
    // then take its code away (SIGBUS).
    if let Ok(compiled) = std::fs::read(&path) {
        // SAFETY: the file is one this function wrote with `Module::serialize` for this engine's
        // settings (the name carries both); wasmtime checks its header and version again, and
        // anything it refuses is compiled afresh below.
        match unsafe { Module::deserialize(engine, &compiled) } {
            Ok(module) => return Ok(module),
            Err(e) => tracing::warn!("compiled-module cache {} not usable: {e}", path.display()),
        }
    }
    let module = compile()?;
    if let Ok(compiled) = module.serialize() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&tmp, compiled))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(
                "could not cache the compiled module in {}: {e}",
                dir.display()
            );
        }
    }
    Ok(module)
}

/// Why a guest call failed.
#[derive(Debug)]
pub enum GuestError {
    /// The module could not be compiled or linked.
    Load(String),
    /// The module speaks another ABI.
    AbiMismatch {
        /// What the module says.
        found: u32,
    },
    /// An export the host needs is missing or has the wrong type.
    MissingExport(String),
    /// The call ran past its deadline.
    Deadline,
    /// The guest asked for more memory than its limit.
    OutOfMemory,
    /// The guest trapped.
    Trap(String),
    /// No instance slot was free.
    Busy,
    /// The guest answered bytes that are not its JSON envelope, or out of bounds.
    BadOutput(String),
}

impl GuestError {
    /// A stable code for logs and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            GuestError::Load(_) => "policy_load_failed",
            GuestError::AbiMismatch { .. } => "policy_abi_mismatch",
            GuestError::MissingExport(_) => "policy_missing_export",
            GuestError::Deadline => "policy_deadline",
            GuestError::OutOfMemory => "policy_out_of_memory",
            GuestError::Trap(_) => "policy_trap",
            GuestError::Busy => "policy_busy",
            GuestError::BadOutput(_) => "policy_bad_output",
        }
    }
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestError::Load(m) => write!(f, "the policy module could not be loaded: {m}"),
            GuestError::AbiMismatch { found } => write!(
                f,
                "the policy module speaks ABI version {found}, this host speaks {HOST_ABI_VERSION}: build both from the same release"
            ),
            GuestError::MissingExport(name) => {
                write!(f, "the policy module has no usable export `{name}`")
            }
            GuestError::Deadline => write!(f, "the policy module ran past its deadline"),
            GuestError::OutOfMemory => write!(f, "the policy module asked for more memory than its limit"),
            GuestError::Trap(m) => write!(f, "the policy module trapped: {m}"),
            GuestError::Busy => write!(f, "no policy instance is free"),
            GuestError::BadOutput(m) => write!(f, "the policy module answered badly: {m}"),
        }
    }
}

impl std::error::Error for GuestError {}

struct Limits {
    memory_limit: usize,
    memory_denied: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Increments the engine's epoch every [`TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The exports a host calls, found once in the module so that calls need no lookup by name, and
/// with their types checked once, so that calls need no type check (see [`Session::call`]).
struct Exports {
    memory: Option<ModuleExport>,
    /// `granted_alloc`, if it is `(i32) -> i32`.
    alloc: Option<ModuleExport>,
    /// Entry point name (without `granted_`) and its export, for each `granted_*` export of type
    /// `(i32, i32) -> i64`.
    entries: Vec<(String, ModuleExport)>,
}

/// Whether `ty` is a function type with exactly these parameters and results.
fn func_type_is(ty: &wasmtime::ExternType, params: &[ValType], results: &[ValType]) -> bool {
    let same = |found: &mut dyn ExactSizeIterator<Item = ValType>, want: &[ValType]| {
        found.len() == want.len() && found.zip(want).all(|(a, b)| ValType::eq(&a, b))
    };
    match ty {
        wasmtime::ExternType::Func(f) => {
            same(&mut f.params(), params) && same(&mut f.results(), results)
        }
        _ => false,
    }
}

impl Exports {
    fn find(module: &Module) -> Exports {
        let entry_type = |ty: &wasmtime::ExternType| {
            func_type_is(ty, &[ValType::I32, ValType::I32], &[ValType::I64])
        };
        let entries = module
            .exports()
            .filter(|e| entry_type(&e.ty()))
            .filter_map(|e| e.name().strip_prefix("granted_").map(str::to_string))
            .filter_map(|entry| {
                let export = module.get_export_index(&format!("granted_{entry}"))?;
                Some((entry, export))
            })
            .collect();
        let alloc_ok = module
            .get_export("granted_alloc")
            .is_some_and(|ty| func_type_is(&ty, &[ValType::I32], &[ValType::I32]));
        Exports {
            memory: module.get_export_index("memory"),
            alloc: module
                .get_export_index("granted_alloc")
                .filter(|_| alloc_ok),
            entries,
        }
    }

    /// The index in `entries` of entry point `name`.
    fn entry(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(entry, _)| entry == name)
    }
}

/// The loaded policy module, ready to instantiate per request.
pub struct Guest {
    engine: Engine,
    pre: InstancePre<Limits>,
    exports: Arc<Exports>,
    sha256: String,
    options: GuestOptions,
    _ticker: Ticker,
}

impl fmt::Debug for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guest")
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of a module's bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Guest {
    /// The embedded module with default limits.
    pub fn embedded() -> Result<Self, GuestError> {
        Self::load(EMBEDDED_POLICY, GuestOptions::default())
    }

    /// Compiles `bytes`, links every JavaScript import as a trap, and checks the ABI.
    pub fn load(bytes: &[u8], options: GuestOptions) -> Result<Self, GuestError> {
        let mut pool = PoolingAllocationConfig::default();
        // Twice as many memory slots as instances: measured, with only as many only half the
        // instances could exist at once (`the_pool_holds_max_instances_sessions_at_once`).
        pool.total_core_instances(options.max_instances)
            .total_memories(options.max_instances.saturating_mul(2))
            .total_tables(options.max_instances.saturating_mul(2))
            .max_tables_per_module(2)
            .max_memories_per_module(1)
            .table_elements(100_000)
            .max_memory_size(options.memory_limit)
            .linear_memory_keep_resident(options.keep_resident)
            // One page: the function table (180 entries) is then reset by a plain `memset`,
            // without the `PAGEMAP_SCAN` system call larger tables need.
            .table_keep_resident(options.keep_resident.min(4096))
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            // Cranelift inlines small functions of the module into their callers: fewer calls,
            // so fewer of the epoch checks every function entry costs (A/B, same module:
            // 0.3–0.8 µs less guest work per password flow in four of five runs).
            .compiler_inlining(wasmtime::Inlining::Yes)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `perf record` can name the guest's functions when this is set.
        // `GRANTED_PERFMAP=jitdump` writes a jitdump instead (for `perf inject --jit`, which lets
        // `perf annotate` show the guest's instructions).
        match std::env::var("GRANTED_PERFMAP").as_deref() {
            Ok("jitdump") => {
                config.profiler(wasmtime::ProfilingStrategy::JitDump);
            }
            Ok(_) => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            Err(_) => {}
        }
        let engine = Engine::new(&config).map_err(|e| GuestError::Load(format!("{e:#}")))?;
        let sha256 = sha256_hex(bytes);
        let module = compile_cached(&engine, bytes, &sha256, options.cache_dir.as_deref())?;
        let mut linker = Linker::new(&engine);
        // The wasm-bindgen glue's imports are JavaScript's; the plain exports never call them.
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| GuestError::Load(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| GuestError::Load(format!("{e:#}")))?;
        let guest = Guest {
            _ticker: Ticker::start(engine.clone()),
            exports: Arc::new(Exports::find(&module)),
            engine,
            pre,
            sha256,
            options,
        };
        let found = guest.abi_version()?;
        if found != HOST_ABI_VERSION {
            return Err(GuestError::AbiMismatch { found });
        }
        Ok(guest)
    }

    /// Reads a module file and loads it.
    pub fn load_file(path: &std::path::Path, options: GuestOptions) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("could not read the policy module {}", path.display()))?;
        Self::load(&bytes, options).with_context(|| format!("policy module {}", path.display()))
    }

    /// How many instances may exist at once (the pool's size).
    pub fn max_instances(&self) -> u32 {
        self.options.max_instances
    }

    /// The SHA-256 of the module's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn abi_version(&self) -> Result<u32, GuestError> {
        let mut session = self.session()?;
        let f: TypedFunc<(), u32> = session.func("granted_abi_version")?;
        let result = f.call(&mut session.store, ());
        result.map_err(|e| session.classify(e))
    }

    /// A fresh instance for one request: several calls share its memory, none outlives it.
    pub fn session(&self) -> Result<Session, GuestError> {
        let mut store = Store::new(
            &self.engine,
            Limits {
                memory_limit: self.options.memory_limit,
                memory_denied: false,
            },
        );
        store.limiter(|l| l as &mut dyn ResourceLimiter);
        let ticks = (self.options.deadline.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e)
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                return Err(GuestError::Busy)
            }
            Err(e) => return Err(GuestError::Trap(format!("{e:#}"))),
        };
        let memory = self
            .exports
            .memory
            .as_ref()
            .and_then(|e| instance.get_module_export(&mut store, e))
            .and_then(|e| e.into_memory())
            .ok_or_else(|| GuestError::MissingExport("memory".into()))?;
        Ok(Session {
            store,
            instance,
            memory,
            ticks,
            exports: self.exports.clone(),
            alloc: None,
            entries: Vec::new(),
        })
    }

    /// Calls one entry point on a fresh instance: JSON in, the JSON envelope out.
    pub fn call(&self, entry: &str, input: &[u8]) -> Result<Vec<u8>, GuestError> {
        self.session()?.call(entry, input)
    }
}

/// One instance and its store, for one request.
pub struct Session {
    store: Store<Limits>,
    instance: wasmtime::Instance,
    memory: Memory,
    ticks: u64,
    exports: Arc<Exports>,
    /// `granted_alloc`, once looked up.
    alloc: Option<Func>,
    /// The entry points looked up so far, by their index in `exports.entries` (a request calls
    /// one or two of them, some several times).
    entries: Vec<(usize, Func)>,
}

impl Session {
    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, GuestError> {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|_| GuestError::MissingExport(name.into()))
    }

    fn export(
        &mut self,
        export: &ModuleExport,
        name: impl FnOnce() -> String,
    ) -> Result<Func, GuestError> {
        self.instance
            .get_module_export(&mut self.store, export)
            .and_then(|e| e.into_func())
            .ok_or_else(|| GuestError::MissingExport(name()))
    }

    fn alloc(&mut self) -> Result<Func, GuestError> {
        if let Some(alloc) = self.alloc {
            return Ok(alloc);
        }
        let exports = self.exports.clone();
        let export = exports
            .alloc
            .as_ref()
            .ok_or_else(|| GuestError::MissingExport("granted_alloc".into()))?;
        let alloc = self.export(export, || "granted_alloc".into())?;
        self.alloc = Some(alloc);
        Ok(alloc)
    }

    fn entry(&mut self, name: &str) -> Result<Func, GuestError> {
        let missing = || GuestError::MissingExport(format!("granted_{name}"));
        let index = self.exports.entry(name).ok_or_else(missing)?;
        if let Some((_, func)) = self.entries.iter().find(|(i, _)| *i == index) {
            return Ok(*func);
        }
        let exports = self.exports.clone();
        let (_, export) = exports.entries.get(index).ok_or_else(missing)?;
        let func = self.export(export, || format!("granted_{name}"))?;
        self.entries.push((index, func));
        Ok(func)
    }

    fn classify(&self, err: wasmtime::Error) -> GuestError {
        if self.store.data().memory_denied {
            return GuestError::OutOfMemory;
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => GuestError::Deadline,
            _ => GuestError::Trap(format!("{err:#}")),
        }
    }

    /// A copy of the instance's linear memory (`cargo xtask bench policy` counts the pages a
    /// request wrote: each is one more for the host to reset when the instance is dropped).
    pub fn memory_snapshot(&self) -> Vec<u8> {
        self.memory.data(&self.store).to_vec()
    }

    /// The instance's linear memory size in bytes.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Calls entry point `entry` (export `granted_{entry}`) with `input`. The entry point frees
    /// its input, and its answer with the next call (ABI 2), so one instance can serve many calls.
    ///
    /// The two calls into the module go through `Func::call_unchecked`: their types were checked
    /// once, when the module was loaded ([`Exports::find`]), so a request pays for no type check.
    pub fn call(&mut self, entry: &str, input: &[u8]) -> Result<Vec<u8>, GuestError> {
        // Each call gets the whole deadline.
        self.store.set_epoch_deadline(self.ticks);
        let alloc = self.alloc()?;
        let func = self.entry(entry)?;
        let len = u32::try_from(input.len())
            .map_err(|_| GuestError::BadOutput("the input is over 4 GiB".into()))?;
        let mut args = [ValRaw::u32(len)];
        // SAFETY: `granted_alloc` is `(i32) -> i32` (checked at load), and `args` has room for
        // its one parameter and its one result.
        let called = unsafe { alloc.call_unchecked(&mut self.store, &mut args) };
        if let Err(e) = called {
            return Err(self.classify(e));
        }
        let ptr = args[0].get_u32();
        self.memory
            .write(&mut self.store, ptr as usize, input)
            .map_err(|_| {
                GuestError::BadOutput("`granted_alloc` gave memory out of bounds".into())
            })?;
        let mut args = [ValRaw::u32(ptr), ValRaw::u32(len)];
        // SAFETY: every entry point in `Exports::entries` is `(i32, i32) -> i64` (checked at
        // load), and `args` has room for its two parameters and its one result.
        let called = unsafe { func.call_unchecked(&mut self.store, &mut args) };
        if let Err(e) = called {
            return Err(self.classify(e));
        }
        let packed = args[0].get_u64();
        let (out_ptr, out_len) = ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32);
        let data = self.memory.data(&self.store);
        let output = (out_ptr as usize)
            .checked_add(out_len as usize)
            .and_then(|end| data.get(out_ptr as usize..end))
            .ok_or_else(|| {
                GuestError::BadOutput("the answer lies outside the module's memory".into())
            })?
            .to_vec();
        Ok(output)
    }
}
