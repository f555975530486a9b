//! A last-in-first-out cache of large freed blocks in front of the system allocator: the
//! Python extension's global allocator (cargo feature `buffer-cache`, which `python`
//! enables; without it the cache exists but nothing allocates through it unless a program
//! installs [`CachingAllocator`] itself).
//!
//! Why: a loop of `y = f(x)` frees its output and allocates one of the same size on the
//! next call. glibc serves that from whichever free heap chunk fits best, which depends on
//! everything freed before, and on the 2-core VM it rotated a 16 MB activation output
//! over three addresses (seen in the benchmark's leaky_relu row, but not its relu row,
//! for no reason in the kernels). A 4M-element float32 map reads 16 MB and writes 16 MB,
//! exactly the 32 MiB L3: with one output buffer it stays in cache, with three it does not
//! (0.52 vs 0.78 ms for the same kernel). Handing back the block freed last, which is the
//! one most likely still in cache, makes the reuse deterministic, as PyTorch's CUDA
//! caching allocator does on the GPU.
//!
//! Blocks of at least [`MIN_BYTES`] are rounded up to a multiple of [`GRAIN`] and kept,
//! when freed, in a table of [`SLOTS`] entries up to a byte limit (default
//! [`DEFAULT_LIMIT`]); beyond it the oldest are returned to the system. Smaller blocks go
//! straight to the system allocator, whose per-thread caches already reuse them well.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::{Mutex, MutexGuard};

/// Blocks of at least this many bytes are cached.
pub const MIN_BYTES: usize = 1 << 20;
/// Cached sizes are rounded up to a multiple of this, so that requests of nearly the same
/// size (a tensor with one more row) share blocks.
pub const GRAIN: usize = 64 << 10;
/// Cached blocks are aligned to a cache line; a request for more goes to the system.
pub const ALIGN: usize = 64;
/// At most this many free blocks are kept.
pub const SLOTS: usize = 32;
/// The default byte limit of the free blocks kept.
pub const DEFAULT_LIMIT: usize = 256 << 20;

#[derive(Clone, Copy)]
struct Slot {
    /// the block's address; 0 marks an empty slot
    ptr: usize,
    bytes: usize,
    /// when it was freed (a counter): the newest matching block is handed out first
    stamp: u64,
}

const EMPTY: Slot = Slot { ptr: 0, bytes: 0, stamp: 0 };

struct Cache {
    slots: [Slot; SLOTS],
    cached: usize,
    limit: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    slots: [EMPTY; SLOTS],
    cached: 0,
    limit: DEFAULT_LIMIT,
    clock: 0,
    hits: 0,
    misses: 0,
});

impl Cache {
    /// Take the oldest kept block out of the table, if any.
    fn pop_oldest(&mut self) -> Option<Slot> {
        let oldest = (0..SLOTS).filter(|&i| self.slots[i].ptr != 0).min_by_key(|&i| self.slots[i].stamp)?;
        let s = std::mem::replace(&mut self.slots[oldest], EMPTY);
        self.cached -= s.bytes;
        Some(s)
    }
}

fn lock() -> MutexGuard<'static, Cache> {
    // nothing panics while the lock is held; a poisoned lock still holds a valid table
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The size class of a request of `bytes`, or None when it is not cached.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() < MIN_BYTES || layout.align() > ALIGN {
        return None;
    }
    Some(layout.size().div_ceil(GRAIN) * GRAIN)
}

#[inline]
fn block_layout(class: usize) -> Layout {
    // SAFETY: ALIGN is a power of two and class, a multiple of GRAIN below isize::MAX
    // (it comes from a valid Layout rounded up by less than GRAIN), does not overflow.
    unsafe { Layout::from_size_align_unchecked(class, ALIGN) }
}

/// The global allocator: the cache for large blocks, [`System`] for the rest.
pub struct CachingAllocator;

impl CachingAllocator {
    /// A cached block of exactly `class` bytes (the newest), if any.
    fn take(class: usize) -> Option<*mut u8> {
        let mut c = lock();
        let mut best: Option<usize> = None;
        for (i, s) in c.slots.iter().enumerate() {
            if s.ptr != 0 && s.bytes == class && best.is_none_or(|b| s.stamp > c.slots[b].stamp) {
                best = Some(i);
            }
        }
        match best {
            Some(i) => {
                let s = std::mem::replace(&mut c.slots[i], EMPTY);
                c.cached -= s.bytes;
                c.hits += 1;
                Some(s.ptr as *mut u8)
            }
            None => {
                c.misses += 1;
                None
            }
        }
    }

    /// Keep a freed block of `class` bytes, returning the oldest blocks to the system
    /// while the table is full or over its limit.
    fn keep(ptr: *mut u8, class: usize) {
        let mut evicted = [EMPTY; SLOTS];
        let mut n_evicted = 0;
        let kept = {
            let mut c = lock();
            if class > c.limit {
                false
            } else {
                loop {
                    let free_slot = c.slots.iter().position(|s| s.ptr == 0);
                    if free_slot.is_some() && c.cached + class <= c.limit {
                        break;
                    }
                    evicted[n_evicted] = c.pop_oldest().expect("a full or over-limit table holds a block");
                    n_evicted += 1;
                }
                let i = c.slots.iter().position(|s| s.ptr == 0).expect("made room above");
                c.clock += 1;
                let stamp = c.clock;
                c.slots[i] = Slot { ptr: ptr as usize, bytes: class, stamp };
                c.cached += class;
                true
            }
        };
        // returned outside the lock: free() may unmap memory, which takes a while
        for s in &evicted[..n_evicted] {
            // SAFETY: each evicted block was allocated by System with block_layout(bytes).
            unsafe { System.dealloc(s.ptr as *mut u8, block_layout(s.bytes)) };
        }
        if !kept {
            // SAFETY: ptr was allocated by System with block_layout(class).
            unsafe { System.dealloc(ptr, block_layout(class)) };
        }
    }
}

// SAFETY: every block handed out is either System's for the same layout, or a block of
// block_layout(class) (at least the requested size, aligned to ALIGN >= the requested
// alignment) that nobody else holds: it left the table under the lock.
unsafe impl GlobalAlloc for CachingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            None => System.alloc(layout),
            Some(class) => Self::take(class).unwrap_or_else(|| System.alloc(block_layout(class))),
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            None => System.alloc_zeroed(layout),
            Some(class) => match Self::take(class) {
                Some(p) => {
                    std::ptr::write_bytes(p, 0, layout.size());
                    p
                }
                None => System.alloc_zeroed(block_layout(class)),
            },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of(layout) {
            None => System.dealloc(ptr, layout),
            Some(class) => Self::keep(ptr, class),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (of the Layout): the caller guarantees new_size is valid for the alignment
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (class_of(layout), class_of(new_layout)) {
            // small to small: glibc may grow in place
            (None, None) => System.realloc(ptr, layout, new_size),
            // the block already has room for the new size
            (Some(old), Some(new)) if old == new => ptr,
            _ => {
                let new_ptr = self.alloc(new_layout);
                if !new_ptr.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new_ptr
            }
        }
    }
}

/// What the cache holds and has done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheInfo {
    /// bytes in free blocks kept for reuse
    pub cached_bytes: usize,
    /// free blocks kept
    pub cached_blocks: usize,
    /// the byte limit of the blocks kept
    pub limit_bytes: usize,
    /// large requests served from the cache
    pub hits: u64,
    /// large requests passed to the system allocator
    pub misses: u64,
}

pub fn info() -> CacheInfo {
    let c = lock();
    CacheInfo {
        cached_bytes: c.cached,
        cached_blocks: c.slots.iter().filter(|s| s.ptr != 0).count(),
        limit_bytes: c.limit,
        hits: c.hits,
        misses: c.misses,
    }
}

/// Set the byte limit of the free blocks kept (0 turns the caching off), returning the
/// blocks over it to the system.
pub fn set_limit(bytes: usize) {
    lock().limit = bytes;
    trim();
}

/// Return every kept block to the system.
pub fn empty() {
    let limit = {
        let mut c = lock();
        std::mem::replace(&mut c.limit, 0)
    };
    trim();
    lock().limit = limit;
}

/// Return the oldest blocks to the system until the kept bytes are within the limit.
fn trim() {
    loop {
        let s = {
            let mut c = lock();
            if c.cached <= c.limit {
                return;
            }
            c.pop_oldest().expect("cached bytes above zero mean a block is held")
        };
        // SAFETY: the block was allocated by System with block_layout(bytes).
        unsafe { System.dealloc(s.ptr as *mut u8, block_layout(s.bytes)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tests share the process-wide cache with every other test running at the same
    // time (and, with the `buffer-cache` feature, with every allocation of the test
    // binary), so they check what their own blocks do, not global counts. Each uses a
    // size class no other test uses. They call the allocator directly, so they test the
    // cache with or without the feature; the last one checks the installed allocator.

    /// A block of `bytes` from the cache's allocator, freed when dropped.
    struct Block {
        ptr: *mut u8,
        layout: Layout,
    }

    impl Block {
        fn new(bytes: usize, zeroed: bool) -> Block {
            let layout = Layout::from_size_align(bytes, 8).unwrap();
            // SAFETY: a valid layout of non-zero size; freed in Drop with the same layout.
            let ptr = unsafe { if zeroed { CachingAllocator.alloc_zeroed(layout) } else { CachingAllocator.alloc(layout) } };
            assert!(!ptr.is_null());
            Block { ptr, layout }
        }
        /// Byte i := f(i) for every byte of the block.
        fn write(&mut self, f: impl Fn(usize) -> u8) {
            for i in 0..self.layout.size() {
                // SAFETY: i is inside the block, which this Block owns
                unsafe { self.ptr.add(i).write(f(i)) }
            }
        }
        /// The first `n` bytes, which the caller has written or had zeroed.
        fn read(&self, n: usize) -> &[u8] {
            assert!(n <= self.layout.size());
            // SAFETY: n bytes inside the block, initialised (see above)
            unsafe { std::slice::from_raw_parts(self.ptr, n) }
        }
    }

    impl Drop for Block {
        fn drop(&mut self) {
            // SAFETY: allocated by CachingAllocator with this layout, freed once.
            unsafe { CachingAllocator.dealloc(self.ptr, self.layout) }
        }
    }

    #[test]
    fn a_freed_large_block_is_handed_back_to_the_next_request_of_its_class() {
        let a = Block::new((3 << 20) + 20, false);
        let addr = a.ptr as usize;
        drop(a);
        // a request of the same class (a little shorter) gets the same block
        let b = Block::new((3 << 20) + 8, false);
        assert_eq!(b.ptr as usize, addr);
        assert_eq!(b.ptr as usize % ALIGN, 0);
        assert!(info().cached_blocks <= SLOTS);
    }

    #[test]
    fn zeroed_requests_from_the_cache_are_zero() {
        let mut a = Block::new((5 << 20) + 8, false);
        a.write(|_| 7);
        drop(a);
        let b = Block::new((5 << 20) + 8, true);
        assert!(b.read((5 << 20) + 8).iter().all(|&v| v == 0));
    }

    #[test]
    fn growing_a_block_across_classes_keeps_its_contents() {
        let mut a = Block::new((2 << 20) + 100, false);
        a.write(|i| (i % 251) as u8);
        let new_size = (9 << 20) + 3;
        // SAFETY: the block came from CachingAllocator with a.layout; new_size is valid
        // for its alignment. The old pointer is not used afterwards (ownership moves).
        let p = unsafe { CachingAllocator.realloc(a.ptr, a.layout, new_size) };
        assert!(!p.is_null());
        let old_len = a.layout.size();
        std::mem::forget(a);
        let grown = Block { ptr: p, layout: Layout::from_size_align(new_size, 8).unwrap() };
        assert!(grown.read(old_len).iter().enumerate().all(|(i, &v)| v == (i % 251) as u8));
    }

    #[test]
    fn large_alignments_bypass_the_cache() {
        let layout = Layout::from_size_align(2 << 20, 4096).unwrap();
        // SAFETY: a valid non-zero layout; the block is freed with the same layout.
        unsafe {
            let p = CachingAllocator.alloc(layout);
            assert!(!p.is_null() && (p as usize).is_multiple_of(4096));
            CachingAllocator.dealloc(p, layout);
        }
    }

    /// With the feature the cache is the global allocator: a freed Vec's block comes back.
    #[cfg(feature = "buffer-cache")]
    #[test]
    fn the_installed_global_allocator_reuses_a_freed_vector() {
        let n = (11 << 20) / 4 + 5;
        let a: Vec<f32> = vec![1.5; n];
        let addr = a.as_ptr() as usize;
        drop(a);
        let b: Vec<f32> = Vec::with_capacity(n - 3);
        assert_eq!(b.as_ptr() as usize, addr);
    }
}
