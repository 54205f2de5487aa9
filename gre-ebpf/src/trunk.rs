//! `gretap` trunks: a frame's 802.1Q VLAN chooses its GRE key on the way
//! out, and a key chooses the VLAN a frame is tagged with on the way in, as
//! Open vSwitch maps a port's VLAN to a tunnel ID. `XGRE_VLANS` holds both
//! directions; VID 0 stands for untagged frames and the native key.

use aya_ebpf::{bindings::__sk_buff, helpers::generated::bpf_skb_vlan_pop, programs::TcContext};
use gre_common::{DropReason, Tunnel, VlanMapKey, KEY_TO_VLAN, VLAN_TO_KEY};
use network_types::{eth::EthHdr, vlan::VlanHdr};

use crate::kernel::{skb_of, Lookup};
use crate::{consts::ETH_P_8021Q, maps::VLANS, packet::Packet};

const VID_MASK: u16 = 0x0fff;

/// The frame's VID (0: untagged): from the skb's VLAN metadata, where a
/// bridge's egress leaves the tag on a veth, or an in-band 802.1Q tag.
#[inline(always)]
pub fn frame_vid(ctx: &TcContext, eth: &EthHdr) -> Result<u16, DropReason> {
    let _skb: *mut __sk_buff = ctx.skb.skb;
    if skb_of(ctx).vlan_present != 0 {
        return Ok(skb_of(ctx).vlan_tci as u16 & VID_MASK);
    }
    if u16::from_be(eth.ether_type) == ETH_P_8021Q {
        let tag: VlanHdr = ctx.read(EthHdr::LEN)?;
        return Ok(tag.vid());
    }
    Ok(0)
}

/// The key VLAN `vid` leaves with.
#[inline(always)]
pub fn key_of(tunnel: &Tunnel, vid: u16) -> Result<u32, DropReason> {
    let k = VlanMapKey { tunnel_ifindex: tunnel.ifindex, dir: VLAN_TO_KEY, id: vid as u32 };
    match VLANS.lookup(k) {
        Some(key) => Ok(*key),
        None if vid == 0 => Err(DropReason::Untagged),
        None => Err(DropReason::VlanUnknown),
    }
}

/// The VLAN a frame that came with `key` enters with (0: untagged), or
/// None when the trunk does not carry the key.
#[inline(always)]
pub fn vid_of(tunnel_ifindex: u32, key: u32) -> Option<u16> {
    let k = VlanMapKey { tunnel_ifindex, dir: KEY_TO_VLAN, id: key };
    VLANS.lookup(k).map(|v| *v as u16 & VID_MASK)
}

/// Leaving: the key for the frame's VLAN, with the tag taken off (the key
/// carries the VLAN now).
#[inline(always)]
pub fn leave(ctx: &TcContext, tunnel: &Tunnel, eth: &EthHdr) -> Result<u32, DropReason> {
    let vid = frame_vid(ctx, eth)?;
    let key = key_of(tunnel, vid)?;
    // SAFETY: the skb is the context the kernel passed to this run.
    if vid != 0 && unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    Ok(key)
}
