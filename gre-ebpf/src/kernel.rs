//! The kernel's helpers and context, wrapped where the wrapper can carry
//! the whole safety argument: each `unsafe` here is argued once, and the
//! programs call these as safe functions. What needs an argument per use
//! (packet pointers, the skb's control block) stays at its use.

use core::borrow::Borrow;

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_redirect},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::TcContext,
};

/// Nanoseconds since boot (CLOCK_MONOTONIC), the clock user space reads as
/// `monotonic_ns`.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn random_u32() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_prandom_u32() }
}

/// Redirect the packet to `ifindex` (`BPF_F_INGRESS`: into its receive
/// path) when the program returns; the action to return.
#[inline(always)]
pub fn redirect(ifindex: u32, flags: u64) -> i32 {
    // SAFETY: takes two integers; an ifindex that is not a device makes
    // the kernel drop the packet, nothing worse.
    unsafe { bpf_redirect(ifindex, flags) as i32 }
}

/// The socket buffer of this run of a TC program, to read its fields.
#[inline(always)]
pub fn skb_of(ctx: &TcContext) -> &__sk_buff {
    // SAFETY: the kernel passes a valid `__sk_buff` for the whole run of
    // the program; the verifier checks every field read through it.
    unsafe { &*ctx.skb.skb }
}

/// A value looked up in place.
pub trait Lookup<K, V> {
    fn lookup(&self, key: impl Borrow<K>) -> Option<&V>;
}

macro_rules! lookup {
    ($($map:ident),*) => {$(
        impl<K, V> Lookup<K, V> for $map<K, V> {
            #[inline(always)]
            fn lookup(&self, key: impl Borrow<K>) -> Option<&V> {
                // SAFETY: the kernel keeps a looked-up value alive until the
                // program returns (RCU). The loader changes a value with one
                // map update: in a map that is not preallocated (peers,
                // routes, flood lists) that swaps in a new element; elsewhere
                // the values are small and their fields read independently,
                // so a read racing an update sees each field old or new.
                unsafe { self.get(key) }
            }
        }
    )*};
}

lookup!(HashMap, LruHashMap, PerCpuHashMap);

/// Change this CPU's value at `index` of a per-CPU array in place (a
/// counter, a working buffer).
#[inline(always)]
pub fn per_cpu<T>(map: &PerCpuArray<T>, index: u32, f: impl FnOnce(&mut T)) {
    if let Some(p) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU value is this CPU's alone, and a BPF program
        // runs to its end without migrating, so nothing else touches it
        // while `f` runs.
        f(unsafe { &mut *p })
    }
}
