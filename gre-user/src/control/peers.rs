//! Changing one peer of a running tunnel, the way `map-edit` and the mesh
//! both do: checked against the other peers alone (not the whole config),
//! applied to that peer's entries alone, and undone when it fails.

use anyhow::{anyhow, Context, Result};

use crate::{
    config::{
        edit::{apply_edit, peer_change, Edit},
        ConfigError, PeerIndex,
    },
    control::state::{self, PeerChange, Running},
    datapath::Datapath,
    net::netlink::Netlink,
};

/// Why a one-peer change was not made.
#[derive(Debug, thiserror::Error)]
pub enum PeerChangeError {
    /// The rules refused it (a clash with another peer, a group naming a
    /// peer to remove, a bad path): the field and the reason.
    #[error(transparent)]
    Refused(#[from] ConfigError),
    /// The kernel refused a step; what was done is undone.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Change a peer of tunnel `run`, as one transaction. `index` holds the
/// other peers' names, routes, remotes and MACs, so a check costs what the
/// peer touches, not the whole config; it is kept in step with the running
/// config whatever happens.
pub async fn change_peer(
    nl: &Netlink,
    dp: &Datapath,
    run: &mut Running,
    index: &mut PeerIndex,
    change: &PeerChange<'_>,
) -> Result<(), PeerChangeError> {
    let PeerChange { name, new, label, .. } = *change;
    let cfg = &run.config;
    let pos = cfg.peers.iter().position(|p| p.name == name);
    let old = pos.map(|i| cfg.peers[i].clone());
    cfg.check_membership(label, name, new.is_none(), old.is_none() && new.is_some())?;
    if let Some(o) = &old {
        index.remove(o);
    }
    let checked = match new {
        Some(n) => cfg.validate_peer(label, pos.unwrap_or(cfg.peers.len()), n, &cfg.link_addrs(), index),
        None => Ok(()),
    };
    let result = match checked {
        Ok(()) => state::apply_peer(nl, dp, run, change).await.map_err(PeerChangeError::Failed),
        Err(e) => Err(e.into()),
    };
    match (&result, new) {
        (Ok(()), Some(n)) => index.add(n),
        (Ok(()), None) => {}
        (Err(_), _) => {
            if let Some(o) = &old {
                index.add(o);
            }
        }
    }
    result
}

/// Apply `edits` to the running tunnel in order, each checked like a config
/// file, all or nothing: the first refused one stops the batch with its
/// label, and the ones before it are undone. A one-peer edit is checked
/// against the other peers and applied to that peer alone, so a batch costs
/// per edit what the edit touches.
pub async fn apply_edits(nl: &Netlink, dp: &Datapath, run: &mut Running, edits: &[(String, Edit)]) -> Result<()> {
    let before = run.config.clone();
    if let Err(e) = apply_each(nl, dp, run, edits).await {
        if run.config == before {
            return Err(e);
        }
        let label = edits.first().map(|(l, _)| l.as_str()).unwrap_or("map-edit");
        return Err(match state::roll_back(nl, dp, run, &before, label).await {
            Ok(()) => anyhow!("{e:#}; the batch's edits before it were undone: nothing changed"),
            Err(e2) => anyhow!("{e:#}; undoing the batch's edits before it failed: {e2:#}"),
        });
    }
    state::stamp(dp, run)
}

async fn apply_each(nl: &Netlink, dp: &Datapath, run: &mut Running, edits: &[(String, Edit)]) -> Result<()> {
    let mut index = PeerIndex::of(&run.config.peers);
    for (label, e) in edits {
        match peer_change(&run.config, e) {
            Some(change) => {
                let (peer, new) = change.with_context(|| label.clone())?;
                let change = PeerChange { name: &peer, new: new.as_ref(), label, host: None };
                change_peer(nl, dp, run, &mut index, &change).await?;
            }
            None => {
                let want = apply_edit(&run.config, e).with_context(|| label.clone())?;
                want.validate(label)?;
                state::apply(nl, dp, run, &want, label).await?;
                index = PeerIndex::of(&run.config.peers);
            }
        }
    }
    Ok(())
}
