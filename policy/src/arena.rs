//! The module's memory allocator: a bump arena in front of dlmalloc.
//!
//! Why: the host gives every token request a fresh instance, and one request makes about 150
//! short-lived allocations (parsed JSON, strings, the answer). dlmalloc spent about 9% of a
//! password flow under wasmtime on them (`perf`, see ARCHITECTURE.md, "Speed"). Here an
//! allocation that fits in the arena is a pointer bump; freeing the last one takes it back, and
//! when nothing in the arena is alive any more the whole arena starts again.
//!
//! Anything that does not fit goes to dlmalloc, and so does everything once the arena is full: a
//! long-lived instance (the JavaScript face, where several requests may be half done at once)
//! keeps working with at most the arena's size held, as it would with dlmalloc alone.
//!
//! The bookkeeping ([`Arena`]) is plain code over addresses, tested natively; only the
//! `GlobalAlloc` around it is built for wasm32 (single-threaded there).

/// A bump region `[start, end)`: where the next allocation goes, and how many are alive.
#[derive(Debug)]
pub struct Arena {
    start: usize,
    end: usize,
    next: usize,
    live: usize,
}

impl Arena {
    /// An empty arena over the addresses `[start, end)`.
    pub const fn new(start: usize, end: usize) -> Arena {
        Arena {
            start,
            end,
            next: start,
            live: 0,
        }
    }

    /// The address of `size` bytes aligned to `align` (a power of two), if they fit.
    pub fn alloc(&mut self, size: usize, align: usize) -> Option<usize> {
        let at = self.next.checked_add(align.checked_sub(1)?)? & !(align - 1);
        let next = at.checked_add(size)?;
        if next > self.end {
            return None;
        }
        self.next = next;
        self.live += 1;
        Some(at)
    }

    /// Whether `addr` was handed out by this arena.
    pub fn owns(&self, addr: usize) -> bool {
        addr >= self.start && addr < self.end
    }

    /// Frees the `size` bytes at `addr` (which [`Arena::owns`]).
    pub fn free(&mut self, addr: usize, size: usize) {
        self.live = self.live.saturating_sub(1);
        if self.live == 0 {
            self.next = self.start;
        } else if addr.checked_add(size) == Some(self.next) {
            self.next = addr;
        }
    }

    /// Resizes the allocation at `addr` from `old` to `new` bytes where it stands, if it is the
    /// last one and the room allows; `false` otherwise (then nothing changed).
    pub fn resize_in_place(&mut self, addr: usize, old: usize, new: usize) -> bool {
        match (addr.checked_add(old), addr.checked_add(new)) {
            (Some(old_end), Some(new_end)) if old_end == self.next && new_end <= self.end => {
                self.next = new_end;
                true
            }
            _ => false,
        }
    }
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod global {
    use super::Arena;
    use crate::token::endpoint::TokenFlow;
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::{Cell, RefCell, UnsafeCell};

    /// The arena's bytes (in the module's zeroed data, after the stack and the constants).
    const ARENA_BYTES: usize = 128 * 1024;

    /// The arena's bookkeeping, the module's other statics that every request writes, and the
    /// arena's bytes, in one page-aligned block: a request then writes all of them in as few pages
    /// as its allocations need (three for a password flow). Each page a request writes costs the
    /// host a reset afterwards: about 0.3 µs a page under wasmtime's pooling allocator (measured:
    /// an instance whose slot held 7 written pages cost 2.1 µs more to make and drop than one in
    /// a clean slot; with the arena's bookkeeping and these statics on other pages, a password
    /// flow wrote 7 pages, now 5).
    #[repr(C, align(4096))]
    struct ArenaMemory {
        state: UnsafeCell<Option<Arena>>,
        mates: PageMates,
        /// Written through the pointers the arena hands out, so behind an `UnsafeCell`.
        bytes: UnsafeCell<[u8; ARENA_BYTES]>,
    }

    /// The module's statics that every request writes, kept in the arena's first page.
    pub(crate) struct PageMates {
        /// The answer of the last entry-point call, kept for the host to read until the next
        /// call (`ffi`).
        pub(crate) last_answer: Cell<Option<Box<[u8]>>>,
        /// The token request in progress in this instance (`api::token_start`).
        pub(crate) flow: RefCell<Option<Box<TokenFlow>>>,
    }

    // SAFETY: wasm32 without the `atomics` feature has one thread.
    unsafe impl Sync for ArenaMemory {}

    static ARENA_MEMORY: ArenaMemory = ArenaMemory {
        state: UnsafeCell::new(None),
        mates: PageMates {
            last_answer: Cell::new(None),
            flow: RefCell::new(None),
        },
        bytes: UnsafeCell::new([0; ARENA_BYTES]),
    };

    /// The statics kept in the arena's first page.
    pub(crate) fn page_mates() -> &'static PageMates {
        &ARENA_MEMORY.mates
    }

    /// The global allocator: [`Arena`] first, dlmalloc behind it.
    pub struct ArenaThenDlmalloc;

    impl ArenaThenDlmalloc {
        pub const fn new() -> Self {
            ArenaThenDlmalloc
        }

        /// # Safety
        /// No other reference to the arena may be alive (one thread, no reentrancy).
        #[allow(clippy::mut_from_ref)]
        unsafe fn arena(&self) -> &mut Arena {
            // SAFETY: the caller's contract.
            let slot = unsafe { &mut *ARENA_MEMORY.state.get() };
            slot.get_or_insert_with(|| {
                let start = ARENA_MEMORY.bytes.get() as usize;
                Arena::new(start, start + ARENA_BYTES)
            })
        }
    }

    static FALLBACK: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

    unsafe impl GlobalAlloc for ArenaThenDlmalloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: one thread; the reference ends here.
            let arena = unsafe { self.arena() };
            match arena.alloc(layout.size(), layout.align()) {
                Some(addr) => addr as *mut u8,
                // SAFETY: forwarded with the caller's layout.
                None => unsafe { FALLBACK.alloc(layout) },
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: one thread; the reference ends here.
            let arena = unsafe { self.arena() };
            if arena.owns(ptr as usize) {
                arena.free(ptr as usize, layout.size());
            } else {
                // SAFETY: not the arena's, so dlmalloc's, with this layout.
                unsafe { FALLBACK.dealloc(ptr, layout) }
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: one thread; the reference ends before any other call below.
            let arena = unsafe { self.arena() };
            if !arena.owns(ptr as usize) {
                // SAFETY: dlmalloc's block, forwarded as it came.
                return unsafe { FALLBACK.realloc(ptr, layout, new_size) };
            }
            if arena.resize_in_place(ptr as usize, layout.size(), new_size) {
                return ptr;
            }
            // SAFETY: `realloc`'s contract makes this a valid layout.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: a non-zero size, as `realloc` guarantees.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are live and distinct; the shorter length is copied.
                unsafe {
                    core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            new
        }
    }
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
pub(crate) use global::{page_mates, ArenaThenDlmalloc};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Alloc(usize, u32),
        Free(usize),
        Resize(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1usize..300, 0u32..5).prop_map(|(s, a)| Op::Alloc(s, a)),
            2 => any::<usize>().prop_map(Op::Free),
            1 => (any::<usize>(), 1usize..400).prop_map(|(i, s)| Op::Resize(i, s)),
        ]
    }

    proptest! {
        /// Live blocks never overlap, stay inside the arena and keep their alignment, and the
        /// arena starts again once nothing is alive.
        #[test]
        fn blocks_never_overlap(ops in prop::collection::vec(op(), 1..200)) {
            let (start, end) = (4096usize, 4096 + 2048);
            let mut arena = Arena::new(start, end);
            let mut live: Vec<(usize, usize)> = Vec::new();
            for op in ops {
                match op {
                    Op::Alloc(size, align_log) => {
                        let align = 1usize << align_log;
                        if let Some(at) = arena.alloc(size, align) {
                            prop_assert!(at >= start && at + size <= end);
                            prop_assert_eq!(at % align, 0);
                            live.push((at, size));
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let (at, size) = live.swap_remove(i % live.len());
                        prop_assert!(arena.owns(at));
                        arena.free(at, size);
                    }
                    Op::Resize(i, new) if !live.is_empty() => {
                        let i = i % live.len();
                        let (at, old) = live[i];
                        if arena.resize_in_place(at, old, new) {
                            prop_assert!(at + new <= end);
                            live[i] = (at, new);
                        }
                    }
                    _ => {}
                }
                let mut sorted = live.clone();
                sorted.sort();
                for pair in sorted.windows(2) {
                    prop_assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{:?} overlaps", pair);
                }
                if live.is_empty() {
                    prop_assert_eq!(arena.next, start);
                }
            }
        }
    }

    #[test]
    fn full_arena_refuses_and_frees_the_last_block_first() {
        let mut arena = Arena::new(0, 64);
        let a = arena.alloc(32, 8).unwrap();
        let b = arena.alloc(32, 8).unwrap();
        assert_eq!(arena.alloc(1, 1), None);
        arena.free(b, 32);
        assert_eq!(arena.alloc(16, 8), Some(b));
        assert!(!arena.resize_in_place(a, 32, 40));
        assert!(arena.resize_in_place(b, 16, 32));
        assert_eq!(arena.alloc(usize::MAX, 1), None);
        assert!(!arena.owns(64));
    }
}
