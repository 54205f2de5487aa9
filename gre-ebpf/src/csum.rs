//! RFC 1071 Internet checksum over packet bytes, for the optional GRE
//! checksum (RFC 2784 section 2.5). bpf_csum_diff takes at most 512 bytes
//! per call, so the packet is summed in chunks through a per-CPU buffer,
//! one chunk per bpf_loop iteration: the verifier checks the callback once
//! instead of walking 128 unrolled iterations.

use aya_ebpf::helpers::generated::{bpf_csum_diff, bpf_loop};
use core::ffi::c_void;
pub use gre_common::csum::{be_words, fold, ipv4_header};
use gre_common::DropReason;

use crate::{consts::CHUNK, maps::SCRATCH, packet::Packet};

/// 64 KiB: a whole GSO/GRO packet.
const MAX_CHUNKS: u32 = 128;

#[repr(C)]
struct Sum {
    ctx: *mut c_void,
    off: u32,
    len: u32,
    done: u32,
    sum: u32,
    err: u32,
}

/// One chunk; returns 1 to stop the loop.
extern "C" fn chunk<P: Packet>(_i: u64, s: *mut c_void) -> i64 {
    // SAFETY: `bpf_loop` hands back the `Sum` `sum_bytes` gave it, alive
    // on its stack for the whole loop.
    let s = unsafe { &mut *(s as *mut Sum) };
    if s.done >= s.len {
        return 1;
    }
    // The buffer first: `n` is then never kept on the stack across the
    // lookup, where Linux 6.1 would lose its bounds.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        s.err = 1;
        return 1;
    };
    // The compiler knows the bytes left are at least 1 and would drop the
    // check; the verifier may not, so hide them from the compiler. Then
    // each bound is one comparison of the very register the helpers get,
    // which every verifier tracks (Linux 6.1 learns nothing from a range
    // check folded into one unsigned comparison of a copy).
    let n = core::hint::black_box(s.len - s.done);
    // Signed: Linux 6.1 learns a lower bound from `n > 0` signed, and
    // none from `n != 0`.
    if (n as i32) < 1 {
        s.err = 1;
        return 1;
    }
    let n = if n as usize > CHUNK { CHUNK as u32 } else { n };
    // SAFETY: this CPU's scratch buffer, alive for the map's life.
    let buf = unsafe { (*scratch).buf.as_mut_ptr() };
    unsafe {
        // SAFETY: `n & !3` is at most CHUNK, and the buffer has 4 bytes past
        // CHUNK for this word.
        // A tail of 1-3 bytes is summed as if padded with zeros.
        (buf.add((n & !3) as usize) as *mut u32).write_unaligned(0);
    }
    // SAFETY: `s.ctx` is the context the kernel passed to this run; `buf` holds CHUNK + 4 bytes and
    // `n` is at most CHUNK.
    if unsafe { P::load_ptr(s.ctx, s.off + s.done, buf, n) } != 0 {
        s.err = 1;
        return 1;
    }
    // `n` may come back from the stack with its bounds lost (Linux 6.1):
    // bound what the helper gets where the compiler cannot drop it.
    let padded = core::hint::black_box((n + 3) & !3);
    if padded as usize > CHUNK + 4 {
        s.err = 1;
        return 1;
    }
    // SAFETY: `buf` holds CHUNK + 4 bytes and `padded` is at most that.
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.cast(), padded, s.sum) };
    if r < 0 {
        s.err = 1;
        return 1;
    }
    s.sum = r as u32;
    s.done += n;
    0
}

/// One's complement sum (folded, not inverted) of `len` bytes at `off`.
#[inline(always)]
pub fn sum_bytes<P: Packet>(pkt: &P, off: usize, len: usize) -> Result<u16, DropReason> {
    if len > CHUNK * MAX_CHUNKS as usize {
        return Err(DropReason::TooLong);
    }
    let mut s = Sum { ctx: pkt.raw(), off: off as u32, len: len as u32, done: 0, sum: 0, err: 0 };
    let cb = chunk::<P> as extern "C" fn(u64, *mut c_void) -> i64;
    // SAFETY: `chunk` takes exactly this `Sum`, which outlives the loop.
    let r = unsafe { bpf_loop(MAX_CHUNKS, cb as *mut c_void, (&mut s as *mut Sum).cast(), 0) };
    if r < 0 || s.err != 0 || s.done != s.len {
        return Err(DropReason::HelperFailed);
    }
    Ok(fold(s.sum as u64))
}

/// Sum of the ten 16-bit words of an IPv4 header without options
/// (unfolded): 0xffff once folded when its checksum is right.
#[inline(always)]
pub fn ipv4_words(ip: &network_types::ip::Ipv4Hdr) -> u64 {
    // SAFETY: `Ipv4Hdr` is 20 bytes of byte arrays (repr(C), no padding).
    let b: [u8; 20] = unsafe { core::mem::transmute_copy(ip) };
    be_words(&b)
}
