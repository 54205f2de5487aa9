//! `[mesh]`: peers from etcd instead of N² peer lists.
//!
//! `xgre run` registers this host under `<prefix>/hosts/<host>` with a
//! lease it keeps alive (one keepalive per ttl/3, nothing else while
//! idle), reads every other host's entry and watches for changes. Each
//! entry becomes a peer through the same checks and the same one-peer
//! update as `map-edit`; a bad one is refused and logged with its key and
//! field. When etcd is unreachable the datapath keeps the last known peers
//! (fails static); when it returns, a full read and a watch from that
//! revision bring it up to date. SIGTERM revokes the lease, which deletes
//! the entry at once; a host that dies leaves when its lease expires.
//!
//! Two halves: the client task talks to etcd and sends `Event`s; the
//! `Applier` turns them into peers inside the `run` loop, so path health
//! and mesh changes never write the same peer at the same time.

pub(crate) mod entry;
pub(crate) mod status;

pub use status::remove_status;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, PutOptions, TlsOptions, WatchOptions};
use ipnet::IpNet;
use tokio::sync::{mpsc, watch};

use crate::{
    config::{Config, Mac, MeshConfig, Origin, PeerIndex},
    control::{
        peers::{self, PeerChangeError},
        state::{self, PeerChange, Running},
    },
    datapath::Datapath,
    mesh::entry::{entry_field, host_of, my_links, HostEntry},
    mesh::status::{status_path, unix_now, ConnState, MeshStatus},
    net::netlink::Netlink,
};

/// Longest wait for one etcd request before the connection counts as lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Retry delays while etcd is unreachable.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One host's key as etcd holds it.
#[derive(Debug)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    /// The lease it lives by (0: none: written by hand, not by a host).
    pub lease: i64,
    /// The revision that created the key: of two overlapping claims, the
    /// older one stands.
    pub created: i64,
}

impl Entry {
    fn of(kv: &etcd_client::KeyValue) -> Entry {
        Entry {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            lease: kv.lease(),
            created: kv.create_revision(),
        }
    }
}

/// What the client task reports.
#[derive(Debug)]
pub enum Event {
    /// Every host's entry as of `revision`.
    Snapshot {
        revision: i64,
        entries: Vec<Entry>,
    },
    Put {
        revision: i64,
        entry: Entry,
    },
    /// Someone else wrote or deleted this host's own key; it was written
    /// back.
    Reclaimed {
        revision: i64,
        what: String,
    },
    Delete {
        revision: i64,
        key: String,
    },
    Connected,
    /// One member failed; the next is tried.
    Lost(String),
    Unreachable(String),
}

/// This system's host name, the default `[mesh] host`.
fn system_host_name() -> Result<String> {
    let name = nix::unistd::gethostname().context("gethostname")?;
    name.into_string().map_err(|n| anyhow!("the host name {n:?} is not UTF-8; set `host` in [mesh]"))
}

fn connect_options(m: &MeshConfig, file: &str) -> Result<ConnectOptions> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        // HTTP/2 pings: a member that died is noticed within 2 s even
        // while the watch is quiet.
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_keep_alive_while_idle(true)
        // A member cut off from the others' quorum fails requests instead
        // of answering from a stale view.
        .with_require_leader(true);
    if let Some(ca) = &m.ca {
        let read = |p: &PathBuf, field: &str| std::fs::read(p).with_context(|| format!("{file}: mesh.{field}: reading {}", p.display()));
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca, "ca")?));
        if let (Some(c), Some(k)) = (&m.cert, &m.key) {
            tls = tls.identity(Identity::from_pem(read(c, "cert")?, read(k, "key")?));
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

async fn timed<T, E: Into<anyhow::Error>>(what: &str, f: impl std::future::Future<Output = Result<T, E>>) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.map_err(Into::into).with_context(|| what.to_string()),
        Err(_) => Err(anyhow!("{what}: no answer in {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

/// The client half: (re)connects, registers, reads, watches, keeps the
/// lease alive; until `stop`, when it revokes the lease.
struct Session {
    m: MeshConfig,
    options: ConnectOptions,
    key: String,
    hosts: String,
    entry: Vec<u8>,
    lease: Option<i64>,
    tx: mpsc::UnboundedSender<Event>,
}

impl Session {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // One member at a time, in turn: a member that died is skipped at
        // once instead of taking a share of the requests (the client's own
        // balancing over all members did, and a lease could expire while
        // requests kept landing on the dead one).
        let n = self.m.etcd.len();
        let mut next = 0;
        let mut failed = 0;
        let mut backoff = BACKOFF_MIN;
        loop {
            let endpoint = self.m.etcd[next % n].clone();
            let mut connected = false;
            match self.once(&endpoint, &mut connected, &mut stop).await {
                Ok(()) => return,
                Err(e) => {
                    if connected {
                        failed = 0;
                        backoff = BACKOFF_MIN;
                    }
                    failed += 1;
                    // Unreachable only when every member failed in turn.
                    let why = format!("{endpoint}: {e:#}");
                    let _ = self.tx.send(if failed >= n { Event::Unreachable(why) } else { Event::Lost(why) });
                }
            }
            next += 1;
            if failed >= n && failed % n == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// One connection: Ok when stopped, Err when it broke.
    async fn once(&mut self, endpoint: &str, connected: &mut bool, stop: &mut watch::Receiver<bool>) -> Result<()> {
        let mut c = timed("connecting", Client::connect([endpoint], Some(self.options.clone()))).await?;
        let ttl = self.m.ttl as i64;
        // The lease survives a short outage (etcd extends leases when a
        // leader is elected); a new one only when it is gone.
        let alive = match self.lease {
            Some(id) => timed("lease lookup", c.lease_time_to_live(id, None)).await?.ttl() > 0,
            None => false,
        };
        if !alive {
            let id = timed("lease grant", c.lease_grant(ttl, None)).await?.id();
            self.lease = Some(id);
        }
        let id = self.lease.expect("set above");
        let (mut keeper, mut acks) = timed("lease keepalive", c.lease_keep_alive(id)).await?;
        // Now: the outage may have eaten most of the lease's time.
        timed("lease keepalive", keeper.keep_alive()).await?;
        timed("registering", c.put(self.key.clone(), self.entry.clone(), Some(PutOptions::new().with_lease(id)))).await?;
        let snap = timed("reading the hosts", c.get(self.hosts.clone(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = snap.header().map(|h| h.revision()).unwrap_or(0);
        let entries = snap.kvs().iter().map(Entry::of).collect();
        let mut w = timed(
            "watching the hosts",
            c.watch(self.hosts.clone(), Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1))),
        )
        .await?;
        let _ = self.tx.send(Event::Snapshot { revision, entries });
        let _ = self.tx.send(Event::Connected);
        *connected = true;
        let period = Duration::from_millis(self.m.ttl as u64 * 1000 / 3);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut last_ack = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if last_ack.elapsed() > 2 * period + REQUEST_TIMEOUT {
                        bail!("no lease keepalive answered for {:.1} s", last_ack.elapsed().as_secs_f64());
                    }
                    timed("lease keepalive", keeper.keep_alive()).await?;
                }
                r = acks.message() => match r.context("lease keepalive")? {
                    Some(a) if a.ttl() > 0 => last_ack = Instant::now(),
                    Some(_) => {
                        self.lease = None;
                        bail!("the lease expired");
                    }
                    None => bail!("etcd closed the keepalive stream"),
                },
                r = w.message() => {
                    let Some(resp) = r.context("watch")? else { bail!("etcd closed the watch") };
                    if resp.canceled() {
                        bail!("watch canceled: {}", resp.cancel_reason());
                    }
                    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let entry = Entry::of(kv);
                        let revision = kv.mod_revision().max(rev);
                        if entry.key == self.key {
                            // Ours, as we wrote it, or someone else's doing:
                            // written back, under our lease.
                            let what = match ev.event_type() {
                                EventType::Put if entry.value == self.entry && entry.lease == id => continue,
                                EventType::Put => "overwritten",
                                EventType::Delete => "deleted",
                            };
                            timed("writing our entry back", c.put(self.key.clone(), self.entry.clone(), Some(PutOptions::new().with_lease(id))))
                                .await?;
                            let _ = self.tx.send(Event::Reclaimed { revision, what: what.to_string() });
                            continue;
                        }
                        let e = match ev.event_type() {
                            EventType::Put => Event::Put { revision, entry },
                            EventType::Delete => Event::Delete { revision, key: entry.key },
                        };
                        let _ = self.tx.send(e);
                    }
                }
                _ = stop.changed() => {
                    // Withdraw: revoking the lease deletes the entry, so
                    // the others drop this host now, not after the TTL.
                    let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(id)).await;
                    return Ok(());
                }
            }
        }
    }
}

/// A running mesh: the client task and the applier.
pub struct Mesh {
    pub applier: Applier,
    rx: mpsc::UnboundedReceiver<Event>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Mesh {
    /// Register and start watching, for tunnel `cfg` (already up).
    pub async fn start(cfg: &Config, file: &str, nl: &Netlink, dp: &Datapath) -> Result<Mesh> {
        let m = cfg.mesh.clone().ok_or_else(|| anyhow!("no [mesh]"))?;
        let host = match &m.host {
            Some(h) => h.clone(),
            None => {
                let h = system_host_name()?;
                crate::config::check_host_name(&h).map_err(|r| anyhow!("{file}: mesh.host: the system's host name {r}; set `host`"))?;
                h
            }
        };
        // Our links as the others must see them: address with its on-link
        // prefix, and MAC.
        let mut published = Vec::new();
        let mut nets = Vec::new();
        for l in &cfg.links {
            let link = nl.link(&l.dev).await?.ok_or_else(|| anyhow!("{file}: link {}: no such device", l.dev))?;
            let addrs = nl.addresses(link.index).await?;
            let net = addrs.iter().find(|n| n.addr() == l.address).copied().unwrap_or_else(|| IpNet::from(l.address));
            nets.push(net);
            published.push((net, Some(Mac(link.mac)).filter(|m| m.0 != [0; 6])));
        }
        let entry = HostEntry::of(cfg, &published).to_json();
        let hosts = format!("{}/hosts/", m.prefix);
        let run = state::show(dp, nl, &cfg.tunnel.name).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let session = Session {
            options: connect_options(&m, file)?,
            key: format!("{hosts}{host}"),
            hosts: hosts.clone(),
            entry,
            lease: None,
            tx,
            m: m.clone(),
        };
        let task = tokio::spawn(session.run(stop_rx));
        // Mesh peers an earlier `run` left are kept until the first full
        // read says otherwise (fail static across restarts too).
        let index = PeerIndex::of(&run.config.peers);
        let applier = Applier {
            mesh: m.clone(),
            my_links: my_links(cfg, &nets),
            status: MeshStatus {
                pid: std::process::id(),
                host,
                prefix: m.prefix.clone(),
                etcd: m.etcd.clone(),
                state: ConnState::Connecting,
                since_unix: unix_now(),
                error: None,
                revision: 0,
                hosts: run.config.peers.iter().filter(|p| p.origin == Origin::Mesh).count(),
                refused: BTreeMap::new(),
                running: true,
            },
            status_file: status_path(&cfg.tunnel.name)?,
            hosts_prefix: hosts,
            applied: BTreeMap::new(),
            index,
            run,
        };
        applier.write_status();
        Ok(Mesh { applier, rx, stop, task })
    }

    /// The next event from etcd (never, once the client has stopped).
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Withdraw this host's entry and stop the client.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
        remove_status(self.applier.tunnel());
    }
}

/// The applying half: entries into peers, inside the `run` loop.
pub struct Applier {
    run: Running,
    /// What this host takes from the others (`routes_allowed`).
    mesh: MeshConfig,
    my_links: Vec<(String, IpNet)>,
    hosts_prefix: String,
    /// Entry values installed, by host.
    applied: BTreeMap<String, Vec<u8>>,
    /// Names, routes, paths and MACs of every peer of the tunnel.
    index: PeerIndex,
    pub status: MeshStatus,
    status_file: PathBuf,
}

impl Applier {
    fn tunnel(&self) -> &str {
        &self.run.config.tunnel.name
    }

    fn write_status(&self) {
        let text = serde_json::to_string(&self.status).expect("status serializes");
        if let Err(e) = crate::net::sys::write_state(&self.status_file, &text) {
            tracing::warn!("{}: mesh: cannot write {}: {e}", self.tunnel(), self.status_file.display());
        }
    }

    fn set_state(&mut self, s: ConnState, error: Option<String>) {
        if self.status.state != s {
            self.status.since_unix = unix_now();
        }
        self.status.state = s;
        self.status.error = error;
    }

    pub async fn handle(&mut self, nl: &Netlink, dp: &Datapath, ev: Event) {
        match ev {
            Event::Connected => {
                if self.status.state != ConnState::Connected {
                    println!("{}: mesh: connected to etcd as host {}", self.tunnel(), self.status.host);
                }
                self.set_state(ConnState::Connected, None);
            }
            Event::Lost(e) => {
                if self.status.state == ConnState::Connected {
                    println!("{}: mesh: lost etcd member ({e}); trying the next", self.tunnel());
                }
            }
            Event::Unreachable(e) => {
                if self.status.state != ConnState::Unreachable {
                    println!("{}: mesh: etcd unreachable ({e}); forwarding with the last {} host(s)", self.tunnel(), self.status.hosts);
                }
                self.set_state(ConnState::Unreachable, Some(e));
            }
            Event::Snapshot { revision, mut entries } => {
                let t0 = Instant::now();
                // Oldest claims first: of two that overlap, the newer is
                // refused.
                entries.sort_by_key(|e| e.created);
                let mut want: BTreeMap<String, Entry> = BTreeMap::new();
                let mut order = Vec::new();
                for e in entries {
                    if let Some(h) = self.host_key(&e.key) {
                        order.push(h.clone());
                        want.insert(h, e);
                    }
                }
                let gone: Vec<String> = self
                    .run
                    .config
                    .peers
                    .iter()
                    .filter(|p| p.origin == Origin::Mesh && !want.contains_key(&p.name))
                    .map(|p| p.name.clone())
                    .collect();
                let mut changes = 0;
                for h in gone {
                    changes += self.remove(nl, dp, &h, revision).await as usize;
                }
                self.status.refused.retain(|k, _| want.values().any(|e| &e.key == k));
                // One dump of the host's routes for every entry: a thousand
                // hosts' routes are checked against it, not dumped anew each.
                let host = nl.host_routes(self.run.ifindex).await.ok();
                for h in order {
                    let e = want.remove(&h).expect("noted above");
                    changes += self.upsert(nl, dp, &h, e, revision, false, host.as_ref()).await as usize;
                }
                self.status.revision = revision;
                println!(
                    "{}: mesh: in sync at revision {revision}: {} host(s), {changes} change(s) in {} ms",
                    self.tunnel(),
                    self.status.hosts,
                    t0.elapsed().as_millis()
                );
            }
            Event::Put { revision, entry } => {
                if let Some(h) = self.host_key(&entry.key) {
                    self.upsert(nl, dp, &h, entry, revision, true, None).await;
                }
                self.status.revision = revision;
            }
            Event::Reclaimed { revision, what } => {
                eprintln!("{}: mesh: this host's entry was {what} by someone else (revision {revision}); written back", self.tunnel());
                self.status.revision = revision;
            }
            Event::Delete { revision, key } => {
                if let Some(h) = self.host_key(&key) {
                    self.status.refused.remove(&key);
                    self.remove(nl, dp, &h, revision).await;
                }
                self.status.revision = revision;
            }
        }
        self.write_status();
    }

    /// The host a key names, unless it is ours or not a host key.
    fn host_key(&self, key: &str) -> Option<String> {
        host_of(key, &self.hosts_prefix).filter(|h| *h != self.status.host).map(str::to_string)
    }

    fn refuse(&mut self, key: &str, field: &str, reason: &str) {
        let line = format!("{field}: {reason}");
        if self.status.refused.get(key) != Some(&line) {
            eprintln!("{}: mesh: refused etcd key {key}: {line}", self.tunnel());
        }
        self.status.refused.insert(key.to_string(), line);
    }

    /// Install or change host `h`'s peer; whether anything changed.
    /// `host`: the host's routes, dumped once for a whole snapshot.
    #[allow(clippy::too_many_arguments)]
    async fn upsert(
        &mut self,
        nl: &Netlink,
        dp: &Datapath,
        h: &str,
        entry: Entry,
        revision: i64,
        log: bool,
        host: Option<&BTreeMap<IpNet, String>>,
    ) -> bool {
        let (key, value) = (entry.key.as_str(), &entry.value);
        if self.applied.get(h) == Some(value) {
            // The same entry again (its host wrote back what someone else
            // had overwritten): whatever was refused in between is moot.
            self.status.refused.remove(key);
            return false;
        }
        // A host writes its entry under the lease it keeps alive; a key
        // without one was written by hand, and would outlive any host.
        if entry.lease == 0 {
            self.refuse(key, "lease", "the entry has no lease: a host's entry lives by the lease its `xgre run` keeps alive");
            return false;
        }
        let (mut peer, to_link) = match HostEntry::parse(value).and_then(|e| e.to_peer(h, &self.run.config, &self.my_links)) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(key, &e.field, &e.reason);
                return false;
            }
        };
        if let Some((field, reason)) = self.mesh.refuse_routes(&peer.routes) {
            self.refuse(key, &field, &reason);
            return false;
        }
        peer.default_route = peer.routes.iter().any(|r| r.prefix_len() == 0);
        if let Some((field, reason)) = self.overlap(h, &peer.routes) {
            self.refuse(key, &field, &reason);
            return false;
        }
        let cfg = &self.run.config;
        let pos = cfg.peers.iter().position(|p| p.name == h);
        if let Some(i) = pos.filter(|&i| cfg.peers[i].origin == Origin::File) {
            self.refuse(key, "host", &format!("`{h}` is also the name of peer[{i}] of the config file; rename one"));
            return false;
        }
        let label = format!("etcd {key}");
        let joined = pos.is_none();
        let change = PeerChange { name: h, new: Some(&peer), label: &label, host };
        match peers::change_peer(nl, dp, &mut self.run, &mut self.index, &change).await {
            Ok(()) => {}
            Err(PeerChangeError::Refused(e)) => {
                self.refuse(key, &entry_field(&e.field, &to_link), &e.reason);
                return false;
            }
            Err(PeerChangeError::Failed(e)) => {
                self.refuse(key, "-", &format!("{e:#}"));
                return false;
            }
        }
        self.status.refused.remove(key);
        self.applied.insert(h.to_string(), entry.value);
        if joined {
            self.status.hosts += 1;
        }
        if log {
            let what = if joined { "joined" } else { "changed" };
            println!("{}: mesh: host {h} {what} (revision {revision})", self.tunnel());
        }
        true
    }

    /// A claim of host `h` that overlaps another peer's routes without
    /// being the same prefix (a /25 inside another host's /24 would take
    /// half its addresses): refused, since that peer claimed first.
    fn overlap(&self, h: &str, routes: &[IpNet]) -> Option<(String, String)> {
        for (j, r) in routes.iter().enumerate() {
            for p in self.run.config.peers.iter().filter(|p| p.name != h) {
                if let Some(theirs) = p.routes.iter().find(|o| *o != r && (o.contains(r) || r.contains(*o))) {
                    let whose = match p.origin {
                        Origin::Mesh => format!("host {}, which claimed it first", p.name),
                        Origin::File => format!("peer {} of this host's config file", p.name),
                    };
                    return Some((format!("routes[{j}]"), format!("{r} overlaps {theirs} of {whose}")));
                }
            }
        }
        None
    }

    async fn remove(&mut self, nl: &Netlink, dp: &Datapath, h: &str, revision: i64) -> bool {
        self.applied.remove(h);
        let Some(old) = self.run.config.peers.iter().find(|p| p.name == h && p.origin == Origin::Mesh).cloned() else {
            return false;
        };
        if let Err(e) = state::apply_peer(nl, dp, &mut self.run, &PeerChange { name: h, new: None, label: "mesh", host: None }).await {
            eprintln!("{}: mesh: removing host {h}: {e:#}", self.tunnel());
            return false;
        }
        self.index.remove(&old);
        self.status.hosts -= 1;
        println!("{}: mesh: host {h} left (revision {revision})", self.tunnel());
        true
    }
}
