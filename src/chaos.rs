//! `printmesh chaos`: a seeded fault run over separate OS processes of this binary.
//!
//! A network of 2 acquirers, 3 intermediaries, 3 labs, 2 couriers and kiosks in 3
//! stores is started on 127.0.0.1; orders are placed at the kiosks while a schedule the
//! seed chooses kills nodes (`kill -9`), pauses them (SIGSTOP/SIGCONT), makes them crash
//! at named points (`PRINTMESH_CRASH_AT`), loses an intermediary's database for good,
//! cuts or slows the link between two chosen nodes (every intermediary reaches each
//! acquirer and lab, and every kiosk each intermediary, through a TCP proxy of its own)
//! and runs a node with its clock 8 days ahead (libfaketime, when installed). Then the faults stop, every node is brought back, the kiosks' outboxes drain,
//! the labs ship, the acquirers settle, and every invariant of the network is checked
//! from each node's own records (`printmesh inspect`). A failing seed is reproduced
//! with `printmesh chaos --seed N`.

// `Value[...]` on JSON never panics (a missing key is `Null`); slices are indexed
// through `get` or `choose`.
#![allow(clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use printmesh_nodes::testnet::{fixtures_dir, TestNet};
use printmesh_protocol::messages::Role;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// The crash points a run may arm (see `printmesh_runtime::failpoint`).
const CRASH_POINTS: [(&str, Role); 6] = [
    ("intermediary.authorised", Role::Intermediary),
    ("intermediary.lab-accepted", Role::Intermediary),
    ("intermediary.captured", Role::Intermediary),
    ("acquirer.stored-before-reply", Role::Acquirer),
    ("lab.accepted-before-answer", Role::Lab),
    ("lab.shipped-before-event", Role::Lab),
];

/// Test cards the kiosks "swipe" (credit, no PIN): two that pay, one over its limit.
const CARDS: [&str; 3] = ["visa-ok", "jcb-ok", "mc-over-limit"];

/// What one seed's run found.
pub struct Outcome {
    pub orders: usize,
    pub faults: Vec<String>,
    pub checked: Vec<String>,
    pub violations: Vec<String>,
    /// Order latencies at the kiosk (placed to final answer), for the answered ones.
    pub latencies: Vec<Duration>,
    /// How long placing the orders took (the kiosks in parallel).
    pub order_phase: Duration,
    pub elapsed: Duration,
}

/// This binary, for the node processes: `/proc/self/exe` where there is one, which
/// still starts this very build if the file is replaced during a run (a rebuild).
fn exe() -> std::io::Result<PathBuf> {
    let proc_self = PathBuf::from("/proc/self/exe");
    if proc_self.exists() {
        return Ok(proc_self);
    }
    std::env::current_exe()
}

/// Where Debian's libfaketime is, for running a node with its clock ahead.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A TCP proxy standing for one link (`from` dials `to` through it): it can cut the
/// link (connections closed, new ones refused) or slow it (a delay on every chunk).
struct Link {
    from: String,
    to: String,
    port: u16,
    cut: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

impl Link {
    fn start(from: &str, to: &str, target_port: u16) -> Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (c, d) = (cut.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let _ = pipe(client, server, c.clone(), d.clone());
            }
        });
        Ok(Link {
            from: from.to_string(),
            to: to.to_string(),
            port,
            cut,
            delay_ms,
        })
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
        self.delay_ms.store(0, Ordering::Relaxed);
    }
}

/// Copies both ways until either side closes or the link is cut.
fn pipe(a: TcpStream, b: TcpStream, cut: Arc<AtomicBool>, delay: Arc<AtomicU64>) -> Result<()> {
    for (mut from, mut to) in [(a.try_clone()?, b.try_clone()?), (b, a)] {
        let (cut, delay) = (cut.clone(), delay.clone());
        from.set_read_timeout(Some(Duration::from_millis(100)))?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if cut.load(Ordering::Relaxed) {
                    break;
                }
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let ms = delay.load(Ordering::Relaxed);
                        if ms > 0 {
                            std::thread::sleep(Duration::from_millis(ms));
                        }
                        if to.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    }
    Ok(())
}

/// `addr` (…/tcp/PORT/p2p/ID) with another port.
fn via_port(addr: &str, port: u16) -> String {
    let parts: Vec<&str> = addr.split('/').collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 4 {
                port.to_string()
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn port_of(addr: &str) -> u16 {
    addr.split('/')
        .nth(4)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// One node process of the run.
struct Proc {
    name: String,
    role: Role,
    folder: PathBuf,
    config: PathBuf,
    addr: String,
    child: Option<Child>,
    stopped: bool,
    /// Running with its clock ahead.
    skewed: bool,
}

impl Proc {
    fn log(&self) -> PathBuf {
        self.folder.join("node.log")
    }

    /// Starts the node and waits for its `ready` line; `crash` arms a crash point.
    fn start(&mut self, crash: Option<&str>) -> Result<()> {
        self.start_with(crash, None)
    }

    /// [`Proc::start`], with the node's clock `ahead` (libfaketime) if given.
    fn start_with(&mut self, crash: Option<&str>, ahead: Option<&str>) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        let mut command = Command::new(exe()?);
        command
            .args([self.role.name(), "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(point) = crash {
            command.env(printmesh_nodes::failpoint::CRASH_AT, point);
        }
        self.skewed = false;
        if let Some(ahead) = ahead {
            // The wall clock only: timers (the monotonic clock) run as they do.
            command
                .env("LD_PRELOAD", FAKETIME)
                .env("FAKETIME", ahead)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
            self.skewed = true;
        }
        let mut child = command.spawn().context("start a node")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).with_context(|| {
                format!("{} did not start; see {}", self.name, self.log().display())
            })?;
            if let Some(a) = line.strip_prefix("listening ") {
                if self.addr.is_empty() {
                    self.addr = a.to_string();
                }
            }
            if line.starts_with("ready ") {
                break;
            }
        }
        self.child = Some(child);
        self.stopped = false;
        Ok(())
    }

    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait (killed after 20 s).
    fn stop(&mut self) {
        if self.stopped {
            self.signal("-CONT");
        }
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `printmesh ARGS…`: whether it succeeded, and its stdout and stderr.
fn cli(args: &[&str]) -> (bool, String) {
    let Ok(exe) = exe() else {
        return (false, "no executable".into());
    };
    match Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
    {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

struct Network {
    dir: PathBuf,
    network: String,
    nodes: Vec<Arc<Mutex<Proc>>>,
    kiosks: Vec<PathBuf>,
    links: Vec<Arc<Link>>,
    /// Data directories on a small file system of their own (tmpfs), which a
    /// full-disk fault fills; unmounted when the run ends.
    mounts: Vec<PathBuf>,
}

/// Whether this process may mount a tmpfs (root, and a kernel that lets it).
fn can_mount(dir: &Path) -> bool {
    let probe = dir.join(".mount-probe");
    if std::fs::create_dir_all(&probe).is_err() {
        return false;
    }
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&probe)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        let _ = Command::new("umount").arg(&probe).status();
    }
    let _ = std::fs::remove_dir(&probe);
    ok
}

impl Drop for Network {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Ok(mut p) = node.lock() {
                p.kill9();
            }
        }
        for m in self.mounts.iter().filter(|m| !m.as_os_str().is_empty()) {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// Fills the file system under `dir` (a `filler` file, written until it is full),
/// for `secs`, then frees it.
fn fill_disk(dir: &Path, secs: u64) {
    let filler = dir.join("filler");
    if let Ok(mut f) = std::fs::File::create(&filler) {
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    std::thread::sleep(Duration::from_secs(secs));
    let _ = std::fs::remove_file(&filler);
}

impl Network {
    /// The peers `from` dials, each through a link of its own.
    fn linked(&mut self, from: &str, to: &[(String, String)]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (name, addr) in to {
            let link = Link::start(from, name, port_of(addr))?;
            out.push(via_port(addr, link.port));
            self.links.push(Arc::new(link));
        }
        Ok(out)
    }

    fn config(
        &self,
        folder: &str,
        role: Role,
        name: &str,
        peers: Vec<String>,
        section: &str,
    ) -> Result<PathBuf> {
        let net = TestNet::named(&self.dir.join(folder), &self.network);
        let config = net.bare(role, name, role.name(), peers);
        Ok(net.write_with_section(&config, section)?)
    }

    fn add(
        &mut self,
        folder: &str,
        role: Role,
        name: &str,
        peers: Vec<String>,
        section: &str,
    ) -> Result<String> {
        let config = self.config(folder, role, name, peers, section)?;
        if self
            .mounts
            .first()
            .is_some_and(|m| m.as_os_str().is_empty())
            && matches!(role, Role::Intermediary | Role::Lab)
        {
            // The data directory on a tmpfs of its own, for the full-disk fault.
            let data = self.dir.join(folder).join(role.name());
            std::fs::create_dir_all(&data)?;
            let mounted = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
                .arg(&data)
                .status()
                .is_ok_and(|s| s.success());
            if mounted {
                self.mounts.push(data);
            }
        }
        let mut proc = Proc {
            name: name.to_string(),
            role,
            folder: self.dir.join(folder),
            config: config.clone(),
            addr: String::new(),
            child: None,
            stopped: false,
            skewed: false,
        };
        proc.start(None)?;
        // The node keeps its port across restarts, so its peers find it again.
        let port = proc
            .addr
            .split('/')
            .nth(4)
            .context("a node's address")?
            .to_string();
        let text = std::fs::read_to_string(&config)?;
        std::fs::write(
            &config,
            text.replace(
                "/ip4/127.0.0.1/tcp/0",
                &format!("/ip4/127.0.0.1/tcp/{port}"),
            ),
        )?;
        let addr = proc.addr.clone();
        self.nodes.push(Arc::new(Mutex::new(proc)));
        Ok(addr)
    }

    fn of_role(&self, role: Role) -> Vec<Arc<Mutex<Proc>>> {
        self.nodes
            .iter()
            .filter(|n| n.lock().map(|p| p.role == role).unwrap_or(false))
            .cloned()
            .collect()
    }

    fn start(dir: &Path) -> Result<Network> {
        let fx = fixtures_dir();
        let mut net = Network {
            dir: dir.to_path_buf(),
            network: format!("chaos-{}", std::process::id()),
            nodes: Vec::new(),
            kiosks: Vec::new(),
            links: Vec::new(),
            // An empty first entry: data directories may be mounted (see `add`).
            mounts: if can_mount(dir) {
                vec![PathBuf::new()]
            } else {
                Vec::new()
            },
        };
        let cards = fx.join("cards.toml");
        let mut acquirers = Vec::new();
        for i in 1..=2 {
            let section = format!("[acquirer]\ncards = \"{}\"", cards.display());
            let name = format!("Acquirer {i}");
            let addr = net.add(&format!("a{i}"), Role::Acquirer, &name, vec![], &section)?;
            acquirers.push((name, addr));
        }
        let mut couriers = Vec::new();
        for i in 1..=2 {
            let section = "[courier]\nauto_in_transit_secs = 2\nauto_deliver_secs = 4";
            couriers.push(net.add(
                &format!("c{i}"),
                Role::Courier,
                &format!("Courier {i}"),
                vec![],
                section,
            )?);
        }
        let mut labs = Vec::new();
        for i in 1..=3 {
            let section = "[lab]\nprints_per_day = 10000\ncutoff_hour = 24\ncourier_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\ntransit_days = 1\nutc_offset_hours = 9\nship_margin_secs = 2";
            let name = format!("Lab {i}");
            let addr = net.add(
                &format!("l{i}"),
                Role::Lab,
                &name,
                couriers.clone(),
                section,
            )?;
            labs.push((name, addr));
        }
        let mut intermediaries = Vec::new();
        for i in 1..=3usize {
            let name = format!("Intermediary {i}");
            let mut targets = acquirers.clone();
            targets.extend(labs.iter().cloned());
            let peers = net.linked(&name, &targets)?;
            // Store s prefers lab s, then the next.
            let mut routes = String::new();
            for s in 1..=3usize {
                let first = s;
                let second = s % 3 + 1;
                routes.push_str(&format!(
                    "\n[[intermediary.routes]]\nstore = \"store-{s}\"\nlabs = [\"Lab {first}\", \"Lab {second}\"]"
                ));
            }
            let section = format!(
                "[intermediary]\nprices = \"{}\"{routes}",
                fx.join("demo/prices.toml").display()
            );
            let addr = net.add(&format!("i{i}"), Role::Intermediary, &name, peers, &section)?;
            intermediaries.push((name, addr));
        }
        for s in 1..=3usize {
            // Stores 1 and 2 seal card data to acquirer 1, store 3 to acquirer 2.
            let acquirer = if s == 3 { "a2" } else { "a1" };
            let section = format!(
                "[kiosk]\nstore = \"store-{s}\"\nstore_name = \"Store {s}\"\nprices = \"{}\"\nmedia_dir = \"{}\"\ncards = \"{}\"\nacquirer_key_file = \"{}\"",
                fx.join("demo/prices.toml").display(),
                fx.join("memory-card").display(),
                cards.display(),
                dir.join(acquirer).join("acquirer/seal.pub").display()
            );
            let name = format!("Kiosk {s}");
            let peers = net.linked(&name, &intermediaries)?;
            let config = net.config(&format!("k{s}"), Role::Kiosk, &name, peers, &section)?;
            net.kiosks.push(config);
        }
        Ok(net)
    }
}

/// One fault of the schedule, at `at` seconds into the order phase.
#[derive(Clone, Debug)]
enum Fault {
    Kill {
        node: usize,
        down_secs: u64,
    },
    Pause {
        node: usize,
        secs: u64,
    },
    Crash {
        node: usize,
        point: &'static str,
    },
    LoseDisk {
        node: usize,
    },
    /// The link is cut (connections closed, redials refused) for a while.
    Partition {
        link: usize,
        secs: u64,
    },
    /// Every chunk on the link waits `ms` for a while.
    Slow {
        link: usize,
        ms: u64,
        secs: u64,
    },
    /// The node restarts with its wall clock `days` ahead (until healing).
    Clock {
        node: usize,
        days: u64,
    },
    /// The node's disk is full for a while.
    DiskFull {
        node: usize,
        secs: u64,
    },
}

/// The kind of a fault, as `--only` names it.
fn kind(f: &Fault) -> &'static str {
    match f {
        Fault::Kill { .. } => "kill",
        Fault::Pause { .. } => "pause",
        Fault::Crash { .. } => "crash",
        Fault::LoseDisk { .. } => "lose-disk",
        Fault::Partition { .. } => "partition",
        Fault::Slow { .. } => "slow",
        Fault::Clock { .. } => "clock",
        Fault::DiskFull { .. } => "disk-full",
    }
}

fn schedule(rng: &mut StdRng, net: &Network, secs: u64, only: &[String]) -> Vec<(u64, Fault)> {
    let n = net.nodes.len();
    let role_of = |i: usize| net.nodes.get(i).and_then(|p| p.lock().ok().map(|p| p.role));
    let mut out = Vec::new();
    let count = rng.gen_range(3..=6);
    let mut tries = 0;
    while out.len() < count && tries < 10_000 {
        tries += 1;
        let at = rng.gen_range(1..secs.max(2));
        let node = rng.gen_range(0..n);
        let fault = match rng.gen_range(0..14) {
            13 => {
                let candidates: Vec<usize> = (0..n)
                    .filter(|i| {
                        net.nodes
                            .get(*i)
                            .and_then(|p| p.lock().ok())
                            .is_some_and(|p| {
                                let data = p.folder.join(p.role.name());
                                net.mounts.contains(&data)
                            })
                    })
                    .collect();
                let Some(&node) = candidates.choose(rng) else {
                    continue;
                };
                Fault::DiskFull {
                    node,
                    secs: rng.gen_range(2..8),
                }
            }
            0..=1 => Fault::Kill {
                node,
                down_secs: rng.gen_range(1..6),
            },
            2 => Fault::Pause {
                node,
                secs: rng.gen_range(1..6),
            },
            9..=10 => Fault::Partition {
                link: rng.gen_range(0..net.links.len().max(1)),
                secs: rng.gen_range(2..10),
            },
            11 => Fault::Slow {
                link: rng.gen_range(0..net.links.len().max(1)),
                ms: rng.gen_range(50..400),
                secs: rng.gen_range(2..10),
            },
            12 if Path::new(FAKETIME).exists() => {
                let candidates: Vec<usize> = (0..n)
                    .filter(|i| matches!(role_of(*i), Some(Role::Lab | Role::Intermediary)))
                    .collect();
                let Some(&node) = candidates.choose(rng) else {
                    continue;
                };
                Fault::Clock { node, days: 8 }
            }
            3..=6 => {
                let Some(&(point, role)) = CRASH_POINTS.choose(rng) else {
                    continue;
                };
                let candidates: Vec<usize> = (0..n).filter(|i| role_of(*i) == Some(role)).collect();
                let Some(&node) = candidates.choose(rng) else {
                    continue;
                };
                Fault::Crash { node, point }
            }
            7..=8 => {
                let candidates: Vec<usize> = (0..n)
                    .filter(|i| role_of(*i) == Some(Role::Intermediary))
                    .collect();
                let Some(&node) = candidates.choose(rng) else {
                    continue;
                };
                Fault::LoseDisk { node }
            }
            _ => continue,
        };
        if !only.is_empty() && !only.iter().any(|k| k == kind(&fault)) {
            continue;
        }
        out.push((at, fault));
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

fn describe(net: &Network, at: u64, f: &Fault) -> String {
    let name = |i: usize| {
        net.nodes
            .get(i)
            .and_then(|p| p.lock().ok().map(|p| p.name.clone()))
            .unwrap_or_default()
    };
    let link_name = |i: usize| {
        net.links
            .get(i)
            .map(|l| (l.from.clone(), l.to.clone()))
            .unwrap_or_default()
    };
    match f {
        Fault::Kill { node, down_secs } => {
            format!("{at:>3}s kill -9 {} (down {down_secs}s)", name(*node))
        }
        Fault::Pause { node, secs } => format!("{at:>3}s SIGSTOP {} for {secs}s", name(*node)),
        Fault::Crash { node, point } => format!("{at:>3}s {} crashes at {point}", name(*node)),
        Fault::Partition { link, secs } => format!(
            "{at:>3}s {} cut off from {} for {secs}s",
            link_name(*link).0,
            link_name(*link).1
        ),
        Fault::Slow { link, ms, secs } => format!(
            "{at:>3}s {} → {} slowed by {ms} ms a chunk for {secs}s",
            link_name(*link).0,
            link_name(*link).1
        ),
        Fault::DiskFull { node, secs } => {
            format!("{at:>3}s {}'s disk full for {secs}s", name(*node))
        }
        Fault::Clock { node, days } => format!(
            "{at:>3}s {} runs with its clock {days} days ahead",
            name(*node)
        ),
        Fault::LoseDisk { node } => format!(
            "{at:>3}s {} killed, its database lost for good",
            name(*node)
        ),
    }
}

/// Carries out the schedule (in its own thread) until `stop`; restarts what it killed.
fn run_faults(
    nodes: Vec<Arc<Mutex<Proc>>>,
    links: Vec<Arc<Link>>,
    plan: Vec<(u64, Fault)>,
    stop: Arc<AtomicBool>,
) {
    let t0 = Instant::now();
    let wait_until = |at: u64| {
        while t0.elapsed() < Duration::from_secs(at) {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    };
    for (at, fault) in plan {
        if !wait_until(at) {
            return;
        }
        let node = match &fault {
            Fault::Kill { node, .. }
            | Fault::Pause { node, .. }
            | Fault::Crash { node, .. }
            | Fault::LoseDisk { node }
            | Fault::DiskFull { node, .. }
            | Fault::Clock { node, .. } => *node,
            Fault::Partition { link, secs } => {
                if let Some(l) = links.get(*link) {
                    l.cut.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_secs(*secs));
                    l.cut.store(false, Ordering::Relaxed);
                }
                continue;
            }
            Fault::Slow { link, ms, secs } => {
                if let Some(l) = links.get(*link) {
                    l.delay_ms.store(*ms, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_secs(*secs));
                    l.delay_ms.store(0, Ordering::Relaxed);
                }
                continue;
            }
        };
        let Some(proc) = nodes.get(node).cloned() else {
            continue;
        };
        match fault {
            Fault::Kill { down_secs, .. } => {
                if let Ok(mut p) = proc.lock() {
                    p.kill9();
                }
                std::thread::sleep(Duration::from_secs(down_secs));
                if let Ok(mut p) = proc.lock() {
                    let _ = p.start(None);
                }
            }
            Fault::Pause { secs, .. } => {
                if let Ok(mut p) = proc.lock() {
                    p.signal("-STOP");
                    p.stopped = true;
                }
                std::thread::sleep(Duration::from_secs(secs));
                if let Ok(mut p) = proc.lock() {
                    p.signal("-CONT");
                    p.stopped = false;
                }
            }
            Fault::Crash { point, .. } => {
                if let Ok(mut p) = proc.lock() {
                    p.stop();
                    let _ = p.start(Some(point));
                }
            }
            Fault::Clock { days, .. } => {
                if let Ok(mut p) = proc.lock() {
                    p.stop();
                    let _ = p.start_with(None, Some(&format!("+{days}d")));
                }
            }
            Fault::Partition { .. } | Fault::Slow { .. } => {}
            Fault::DiskFull { secs, .. } => {
                let data = proc.lock().map(|p| p.folder.join(p.role.name()));
                if let Ok(data) = data {
                    fill_disk(&data, secs);
                }
            }
            Fault::LoseDisk { .. } => {
                if let Ok(mut p) = proc.lock() {
                    p.kill9();
                    let data = p.folder.join(p.role.name());
                    // The node's key survives (restored with its config); its records do not.
                    let _ = std::fs::remove_dir_all(data.join("db"));
                    let _ = std::fs::remove_dir_all(data.join("blobs"));
                    let _ = p.start(None);
                }
            }
        }
    }
}

/// Brings back every node that is down or paused (armed crash points disarmed).
fn heal(net: &Network) {
    for link in &net.links {
        link.heal();
    }
    for node in &net.nodes {
        if let Ok(mut p) = node.lock() {
            if p.stopped {
                p.signal("-CONT");
                p.stopped = false;
            }
            if p.skewed {
                // Its clock put right (as NTP would).
                p.stop();
            }
            if !p.alive() {
                p.kill9();
                let _ = p.start(None);
            }
        }
    }
}

/// Ships whatever a lab has queued or printed (the labs print by hand).
fn ship_all(labs: &[Arc<Mutex<Proc>>]) -> usize {
    let mut shipped = 0;
    for lab in labs {
        let config = match lab.lock() {
            Ok(p) => p.config.clone(),
            Err(_) => continue,
        };
        let (ok, text) = cli(&["lab", "--config", path(&config), "status"]);
        if !ok {
            continue;
        }
        let Ok(status) = serde_json::from_str::<Value>(text.lines().next().unwrap_or("{}")) else {
            continue;
        };
        for job in status["jobs"].as_array().cloned().unwrap_or_default() {
            if matches!(job["status"].as_str(), Some("queued" | "printed")) {
                if let Some(id) = job["order_id"].as_str() {
                    if cli(&["lab", "--config", path(&config), "ship", id]).0 {
                        shipped += 1;
                    }
                }
            }
        }
    }
    shipped
}

/// Places orders at one kiosk, one after another: each `(order id, latency)` answered
/// in time, and the ids left pending.
fn drive_kiosk(
    config: PathBuf,
    orders: usize,
    offset: usize,
    seed: u64,
    paced: bool,
) -> (Vec<(String, Duration)>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed ^ (offset as u64).wrapping_mul(0x9e37_79b9));
    let mut answered = Vec::new();
    let mut pending = Vec::new();
    for i in 0..orders {
        // Customers come at their own pace, through the faults.
        if paced {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..2500)));
        }
        let card = CARDS[(i + offset) % CARDS.len()];
        let t = Instant::now();
        let (_, text) = cli(&[
            "kiosk",
            "--config",
            path(&config),
            "order",
            "--card",
            card,
            "--timeout-secs",
            "15",
        ]);
        let Some(v) = text
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
        else {
            continue;
        };
        let id = v["order_id"].as_str().unwrap_or_default().to_string();
        if v["outcome"] == "pending" {
            pending.push(id);
        } else {
            answered.push((id, t.elapsed()));
        }
    }
    (answered, pending)
}

/// Runs a kiosk's node (headless) for a while so its outbox drains; returns what is
/// left in it.
fn drain_kiosk(config: &Path, secs: u64) -> Result<usize> {
    let exe = exe()?;
    let folder = config.parent().context("kiosk folder")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(folder.join("node.log"))?;
    let mut child = Command::new(exe)
        .args(["kiosk", "--headless", "--config", path(config)])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    std::thread::sleep(Duration::from_secs(secs));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let state = inspect(config)?;
    Ok(state["outbox"].as_array().map(Vec::len).unwrap_or(0))
}

fn inspect(config: &Path) -> Result<Value> {
    let (ok, text) = cli(&["inspect", "--config", path(config)]);
    if !ok {
        bail!("inspect {}: {text}", config.display());
    }
    Ok(serde_json::from_str(&text)?)
}

/// How a run goes: with the seed's faults or none, customers at their own pace or
/// back to back (for the benchmark).
#[derive(Clone, Copy)]
pub struct Mode<'a> {
    pub faults: bool,
    pub paced: bool,
    /// Only these kinds of fault (`kill`, `pause`, `crash`, `lose-disk`, `partition`,
    /// `slow`, `clock`, `disk-full`); all when empty.
    pub only: &'a [String],
}

/// One seeded run in `dir`.
pub fn run_seed(seed: u64, orders_per_kiosk: usize, dir: &Path, mode: Mode) -> Result<Outcome> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let net = Network::start(dir)?;
    // About the time the orders take with no faults.
    let window = if mode.paced {
        (orders_per_kiosk as u64) * 2 + 3
    } else {
        (orders_per_kiosk as u64).div_ceil(2) + 2
    };
    let mut plan = schedule(&mut rng, &net, window, mode.only);
    if !mode.faults {
        plan.clear();
    }
    let faults: Vec<String> = plan.iter().map(|(at, f)| describe(&net, *at, f)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let fault_thread = {
        let nodes = net.nodes.clone();
        let links = net.links.clone();
        let stop = stop.clone();
        std::thread::spawn(move || run_faults(nodes, links, plan, stop))
    };
    let shipper = {
        let stop = stop.clone();
        let labs = net.of_role(Role::Lab);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                ship_all(&labs);
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };
    let drivers: Vec<_> = net
        .kiosks
        .iter()
        .enumerate()
        .map(|(k, config)| {
            let config = config.clone();
            let paced = mode.paced;
            std::thread::spawn(move || drive_kiosk(config, orders_per_kiosk, k, seed, paced))
        })
        .collect();
    let order_start = Instant::now();
    let mut latencies = Vec::new();
    for d in drivers {
        if let Ok((answered, _)) = d.join() {
            latencies.extend(answered.into_iter().map(|(_, t)| t));
        }
    }
    let order_phase = order_start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = fault_thread.join();
    let _ = shipper.join();

    // Healing: every node back, the outboxes drained, everything shipped and settled.
    heal(&net);
    for _ in 0..8 {
        let mut left = 0;
        for k in &net.kiosks {
            left += drain_kiosk(k, 6)?;
        }
        if left == 0 {
            break;
        }
        heal(&net);
    }
    for _ in 0..10 {
        heal(&net);
        if ship_all(&net.of_role(Role::Lab)) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let acquirers = net.of_role(Role::Acquirer);
    let mut quiet = 0;
    for _ in 0..30 {
        heal(&net);
        let mut settled_any = false;
        for a in &acquirers {
            let config = a.lock().map(|p| p.config.clone()).unwrap_or_default();
            let (ok, text) = cli(&["acquirer", "--config", path(&config), "settle"]);
            if ok && !text.contains("nothing to settle") {
                settled_any = true;
            }
        }
        quiet = if settled_any { 0 } else { quiet + 1 };
        // Quiet for longer than an adoption takes (ADOPT_AFTER and a retry).
        if quiet >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // The intermediaries pay the labs (their retry task, every 3 s).
    std::thread::sleep(Duration::from_secs(8));
    for node in &net.nodes {
        if let Ok(mut p) = node.lock() {
            p.stop();
        }
    }
    let (checked, violations) = check(&net)?;
    Ok(Outcome {
        orders: orders_per_kiosk * net.kiosks.len(),
        faults,
        checked,
        violations,
        latencies,
        order_phase,
        elapsed: started.elapsed(),
    })
}

/// Every invariant, from each node's own records.
fn check(net: &Network) -> Result<(Vec<String>, Vec<String>)> {
    let mut checked = Vec::new();
    let mut bad = Vec::new();
    let state = |role: Role| -> Result<Vec<(String, Value)>> {
        let mut out = Vec::new();
        for n in net.of_role(role) {
            let (name, config) = n
                .lock()
                .map(|p| (p.name.clone(), p.config.clone()))
                .map_err(|_| anyhow::anyhow!("a node's lock"))?;
            out.push((name, inspect(&config)?));
        }
        Ok(out)
    };
    let kiosks: Vec<Value> = net
        .kiosks
        .iter()
        .map(|k| inspect(k))
        .collect::<Result<_>>()?;
    let labs = state(Role::Lab)?;
    let acquirers = state(Role::Acquirer)?;
    let intermediaries = state(Role::Intermediary)?;
    let arr = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();

    // Every acknowledged order reached a final state.
    let mut answers: BTreeMap<String, Value> = BTreeMap::new();
    let mut waiting = 0;
    for k in &kiosks {
        waiting += arr(k, "outbox").len();
        for o in arr(k, "orders") {
            answers.insert(o["order_id"].as_str().unwrap_or_default().to_string(), o);
        }
    }
    checked.push(format!(
        "{} orders answered at the kiosks; {waiting} still in an outbox",
        answers.len()
    ));
    if waiting > 0 {
        bad.push(format!("{waiting} orders never reached a final answer"));
    }
    for (id, o) in &answers {
        if o["outcome"] == "pending" {
            bad.push(format!("order {id}: the kiosk recorded a non-final answer"));
        }
    }

    // At most one lab job per order, at the lab the receipt names.
    let mut jobs: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (name, lab) in &labs {
        for j in arr(lab, "jobs") {
            if j["status"] != "rejected" {
                jobs.entry(j["order_id"].as_str().unwrap_or_default().to_string())
                    .or_default()
                    .push((name.clone(), j));
            }
        }
    }
    checked.push(format!(
        "{} lab jobs across {} labs",
        jobs.values().map(Vec::len).sum::<usize>(),
        labs.len()
    ));
    for (id, js) in &jobs {
        if js.len() > 1 {
            bad.push(format!("order {id}: printed by {} labs", js.len()));
        }
        match answers.get(id) {
            Some(o) if o["outcome"] == "approved" => {
                if let Some((lab, _)) = js.first() {
                    if o["lab"].as_str() != Some(lab.as_str()) {
                        bad.push(format!(
                            "order {id}: the receipt names {} but {lab} prints it",
                            o["lab"]
                        ));
                    }
                }
            }
            Some(o) => bad.push(format!(
                "order {id}: a lab job for an order the kiosk was told is {}",
                o["outcome"]
            )),
            None => {}
        }
    }

    // Holds: captured once, only for approved orders that shipped; books balance.
    let mut auths: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (name, a) in &acquirers {
        if a["ledger_balanced"] != true {
            bad.push(format!("{name}: the books do not balance"));
        }
        for r in arr(a, "authorisations") {
            auths
                .entry(r["order_id"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push((name.clone(), r));
        }
    }
    checked.push(format!(
        "{} authorisations at {} acquirers; books balance",
        auths.len(),
        acquirers.len()
    ));
    for (id, rs) in &auths {
        if rs.len() > 1 {
            bad.push(format!("order {id}: authorised at {} acquirers", rs.len()));
        }
        for (acq, r) in rs {
            let told = answers
                .get(id)
                .map(|o| o["outcome"].as_str().unwrap_or_default().to_string());
            let captured = r["hold"] == "captured";
            if captured && told.as_deref() != Some("approved") {
                bad.push(format!(
                    "order {id}: captured at {acq} but the customer was told {told:?}"
                ));
            }
            if captured
                && !jobs
                    .get(id)
                    .is_some_and(|j| j.iter().any(|(_, j)| j["shipped"] == true))
            {
                bad.push(format!("order {id}: captured at {acq} with no shipped job"));
            }
            if captured && !r["settled"].is_string() {
                bad.push(format!("order {id}: captured at {acq} but never settled"));
            }
        }
    }
    for (id, js) in &jobs {
        let shipped = js.iter().any(|(_, j)| j["shipped"] == true);
        let captured = auths
            .get(id)
            .is_some_and(|r| r.iter().any(|(_, r)| r["hold"] == "captured"));
        if shipped && !captured {
            bad.push(format!(
                "order {id}: shipped but its payment was never captured"
            ));
        }
    }

    // Billed once; lab fees paid = lab fees received.
    let mut billed: BTreeMap<String, usize> = BTreeMap::new();
    for (_, im) in &intermediaries {
        for o in arr(im, "orders") {
            if o["settled"].is_string() {
                *billed
                    .entry(o["order_id"].as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
            }
        }
    }
    for (id, n) in &billed {
        if *n > 1 {
            bad.push(format!("order {id}: billed by {n} intermediaries"));
        }
    }
    let settled_at_acquirers: BTreeSet<&String> = auths
        .iter()
        .filter(|(_, rs)| rs.iter().any(|(_, r)| r["settled"].is_string()))
        .map(|(id, _)| id)
        .collect();
    for id in &settled_at_acquirers {
        if !billed.contains_key(*id) {
            bad.push(format!(
                "order {id}: paid by the acquirer but on no intermediary's books"
            ));
        }
    }
    checked.push(format!(
        "{} orders settled, each billed by one intermediary",
        billed.len()
    ));
    let mut fees_paid = 0i64;
    let mut unpaid = 0;
    for (_, im) in &intermediaries {
        for o in arr(im, "orders") {
            if o["lab_paid"] == true {
                fees_paid += o["lab_fee_minor"].as_i64().unwrap_or(0);
            } else if o["settled"].is_string() {
                unpaid += 1;
            }
        }
    }
    let mut fees_received = 0i64;
    for (_, lab) in &labs {
        for j in arr(lab, "jobs") {
            fees_received += j["paid"]["fee_minor"].as_i64().unwrap_or(0);
            if j["shipped"] == true && !j["paid"].is_object() {
                bad.push(format!(
                    "order {}: shipped by a lab never paid",
                    j["order_id"]
                ));
            }
        }
    }
    if unpaid > 0 {
        bad.push(format!(
            "{unpaid} settled orders whose lab fee was not paid"
        ));
    }
    if fees_paid != fees_received {
        bad.push(format!(
            "lab fees paid {fees_paid} ≠ lab fees received {fees_received}"
        ));
    }
    checked.push(format!(
        "lab fees paid = lab fees received = {fees_received}"
    ));
    Ok((checked, bad))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// `printmesh chaos --bench`: the same seed's orders placed back to back on the same
/// network twice, with no faults (the floor) and with its faults; orders per second
/// and latencies of both and their ratio.
pub fn bench(seed: Option<u64>, orders: usize) -> Result<bool> {
    let seed = seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let mut rows = Vec::new();
    let mut all_clean = true;
    for faults in [false, true] {
        let tmp = tempfile::tempdir()?;
        let o = run_seed(
            seed,
            orders,
            tmp.path(),
            Mode {
                faults,
                paced: false,
                only: &[],
            },
        )?;
        let mut l = o.latencies.clone();
        l.sort();
        let per_sec = l.len() as f64 / o.order_phase.as_secs_f64().max(0.001);
        let clean = o.violations.is_empty();
        all_clean &= clean;
        println!(
            "{}: {} of {} orders answered at the kiosk in {:.1} s = {per_sec:.2} orders/s; latency p50 {:.2} s, p99 {:.2} s; {} faults; invariants {}",
            if faults { "with faults" } else { "no faults  " },
            l.len(),
            o.orders,
            o.order_phase.as_secs_f64(),
            percentile(&l, 0.5).as_secs_f64(),
            percentile(&l, 0.99).as_secs_f64(),
            o.faults.len(),
            if clean { "hold".to_string() } else { format!("VIOLATED: {:?}", o.violations) }
        );
        for f in &o.faults {
            println!("    {f}");
        }
        rows.push((per_sec, percentile(&l, 0.99)));
    }
    if let [(base_rate, base_p99), (rate, p99)] = rows.as_slice() {
        println!(
            "seed {seed}: throughput with faults {:.2}x the no-fault floor; p99 latency {:.2}x",
            rate / base_rate.max(f64::MIN_POSITIVE),
            p99.as_secs_f64() / base_p99.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    }
    Ok(all_clean)
}

/// `printmesh chaos`: the seeds given, one after another. True when all ran clean.
pub fn run(
    seed: Option<u64>,
    seeds: usize,
    orders: usize,
    keep: Option<PathBuf>,
    only: Vec<String>,
) -> Result<bool> {
    let list: Vec<u64> = match seed {
        Some(s) => vec![s],
        None => {
            let base = rand::random::<u32>() as u64;
            (0..seeds as u64).map(|i| base + i).collect()
        }
    };
    let mut clean = 0;
    let mut latencies = Vec::new();
    let mut total_orders = 0;
    for seed in &list {
        let tmp = tempfile::tempdir()?;
        let dir = match &keep {
            Some(d) => {
                let d = d.join(format!("seed-{seed}"));
                let _ = std::fs::remove_dir_all(&d);
                std::fs::create_dir_all(&d)?;
                d
            }
            None => tmp.path().to_path_buf(),
        };
        println!("seed {seed}: {} orders; faults:", orders * 3);
        let mode = Mode {
            faults: true,
            paced: true,
            only: &only,
        };
        let outcome = run_seed(*seed, orders, &dir, mode)?;
        for f in &outcome.faults {
            println!("  {f}");
        }
        for c in &outcome.checked {
            println!("  checked: {c}");
        }
        total_orders += outcome.orders;
        latencies.extend(outcome.latencies.iter().copied());
        if outcome.violations.is_empty() {
            clean += 1;
            println!(
                "  seed {seed}: clean ({:.0} s)",
                outcome.elapsed.as_secs_f64()
            );
        } else {
            for v in &outcome.violations {
                println!("  VIOLATED: {v}");
            }
            let only = if only.is_empty() {
                String::new()
            } else {
                format!(" --only {}", only.join(","))
            };
            println!(
                "  reproduce: printmesh chaos --seed {seed} --orders {orders}{only} --keep DIR"
            );
        }
    }
    latencies.sort();
    let p = |q: f64| format!("{:.2} s", percentile(&latencies, q).as_secs_f64());
    println!(
        "{clean} of {} seeds clean; {total_orders} orders; order latency p50 {} p99 {} ({} answered at the screen)",
        list.len(),
        p(0.5),
        p(0.99),
        latencies.len()
    );
    Ok(clean == list.len())
}
