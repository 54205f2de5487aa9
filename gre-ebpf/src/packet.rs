//! Byte access to a packet, the same for XDP and TC, so that parsing and
//! checksumming are written once. Reads go through the load_bytes helpers:
//! they bound-check for us and work on non-linear buffers too.

use aya_ebpf::{
    bindings::{BPF_CSUM_LEVEL_DEC, BPF_CSUM_LEVEL_INC, BPF_CSUM_LEVEL_QUERY},
    helpers::generated::{bpf_csum_level, bpf_csum_update, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use core::{
    ffi::c_void,
    mem::{size_of, MaybeUninit},
};
use gre_common::DropReason;

use crate::kernel::skb_of;

pub trait Packet {
    /// Bytes in the packet, from the Ethernet header on.
    fn len(&self) -> usize;
    /// The device the packet arrived on.
    fn ifindex(&self) -> u32;
    /// The program context (`__sk_buff` or `xdp_md`), for callbacks.
    fn raw(&self) -> *mut c_void;
    /// The VLAN tag the driver or the stack took off the frame before the
    /// program saw it (TC only: the kernel untags before TC ingress runs;
    /// XDP sees tags in the frame).
    fn stripped_vlan(&self) -> Option<u16>;
    /// Whether the packet is an skb (TC) rather than an XDP buffer.
    fn is_skb(&self) -> bool;
    /// Whether the skb is CHECKSUM_PARTIAL: built on this machine (another
    /// namespace, a VM behind a tap) with a checksum still to be filled in.
    /// The kernel takes such a packet's checksums as good; its bytes do
    /// not hold them yet. Never for XDP, which sees what a NIC received.
    fn checksum_partial(&self) -> bool;
    /// Copy `len` bytes at `off` of the packet behind context `ctx`;
    /// non-zero when they are not all there.
    unsafe fn load_ptr(ctx: *mut c_void, off: u32, dst: *mut u8, len: u32) -> i64;

    #[inline(always)]
    fn load_raw(&self, off: usize, dst: *mut u8, len: u32) -> Result<(), DropReason> {
        // SAFETY: `self.raw()` is the context the kernel passed to this
        // run; callers pass `dst` with room for `len` bytes.
        if unsafe { Self::load_ptr(self.raw(), off as u32, dst, len) } == 0 {
            Ok(())
        } else {
            Err(DropReason::Truncated)
        }
    }

    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Result<T, DropReason> {
        let mut v = MaybeUninit::<T>::uninit();
        self.load_raw(off, v.as_mut_ptr().cast(), size_of::<T>() as u32)?;
        // SAFETY: `load_raw` succeeded: all `size_of::<T>()` bytes were
        // written, and `T: Copy` here are plain byte structs.
        Ok(unsafe { v.assume_init() })
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn len(&self) -> usize {
        skb_of(self).len as usize
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        skb_of(self).ifindex
    }

    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.skb.skb.cast()
    }

    #[inline(always)]
    fn stripped_vlan(&self) -> Option<u16> {
        let skb = skb_of(self);
        (skb.vlan_present != 0).then_some(skb.vlan_tci as u16)
    }

    #[inline(always)]
    fn is_skb(&self) -> bool {
        true
    }

    /// `__sk_buff` does not show ip_summed; the checksum helpers tell it
    /// without changing it. QUERY answers only for UNNECESSARY; INC turns
    /// NONE into UNNECESSARY (undone by DEC) and leaves the others;
    /// csum_update works only on COMPLETE. What is left is PARTIAL.
    #[inline(always)]
    fn checksum_partial(&self) -> bool {
        let skb = self.skb.skb;
        // SAFETY: the skb is the context the kernel passed to this run;
        // its fields are only read.
        unsafe {
            if bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY as u64) >= 0 {
                return false;
            }
            bpf_csum_level(skb, BPF_CSUM_LEVEL_INC as u64);
            if bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY as u64) >= 0 {
                bpf_csum_level(skb, BPF_CSUM_LEVEL_DEC as u64);
                return false;
            }
            bpf_csum_update(skb, 0) < 0
        }
    }

    #[inline(always)]
    unsafe fn load_ptr(ctx: *mut c_void, off: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller's contract (`Packet::load_ptr`).
        unsafe { bpf_skb_load_bytes(ctx as *const _, off, dst.cast(), len) }
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end() - self.data()
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: `self.ctx` is the context the kernel passed to this run.
        unsafe { (*self.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.ctx.cast()
    }

    #[inline(always)]
    fn stripped_vlan(&self) -> Option<u16> {
        None
    }

    #[inline(always)]
    fn is_skb(&self) -> bool {
        false
    }

    #[inline(always)]
    fn checksum_partial(&self) -> bool {
        false
    }

    #[inline(always)]
    unsafe fn load_ptr(ctx: *mut c_void, off: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller's contract (`Packet::load_ptr`).
        unsafe { bpf_xdp_load_bytes(ctx.cast(), off, dst.cast(), len) }
    }
}
