//! What a node takes from its peers, decided without IO: request, hello, replay, sync
//! and event budgets (token buckets per peer and per event origin), strikes, and
//! cut-offs for peers that flood. Each function takes the clock and returns a
//! [`Verdict`]; the event loop carries it out (logs once, drops, disconnects, blocks).
//! Certificates are judged the same way by `membership::Gate`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use printmesh_protocol::messages::Role;
use printmesh_protocol::wire::Spec;

use crate::config::LimitsConfig;

/// How long a peer that flooded is refused.
pub const CUT_OFF_FOR: Duration = Duration::from_secs(60);
/// Refused requests and rejected gossip a peer may cause within [`STRIKE_WINDOW`]
/// before it is cut off.
pub const MAX_STRIKES: u32 = 100;
/// Connections a peer may open without completing a hello within
/// [`HELLO_FAILURE_WINDOW`] before it is cut off (for [`CUT_OFF_FOR`], doubling each
/// time it does so again, up to [`MAX_HELLO_CUT_OFF`]).
pub const MAX_FAILED_HELLOS: u32 = 3;
pub const HELLO_FAILURE_WINDOW: Duration = Duration::from_secs(60);
pub const MAX_HELLO_CUT_OFF: Duration = Duration::from_secs(3600);
pub const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Peers (and event origins) whose budgets a node keeps track of at once.
pub const MAX_ALLOWANCES: usize = 8192;
/// Events a peer may pass on that this node has already (an honest relay passes on
/// only what it had not seen; a few cross in flight).
pub const REPLAY_BUDGET: (f64, f64) = (50.0, 500.0);
/// Hellos a peer may send (one per connection; a few reconnects).
pub const HELLO_BUDGET: (f64, f64) = (1.0, 10.0);
/// Sync pages a peer may ask for, whatever its role (its own syncer asks at most ten a
/// second, one page at a time); apart from its request budget, so catching up never
/// takes from what a kiosk may send in orders.
pub const SYNC_BUDGET: (f64, f64) = (20.0, 40.0);

/// Why something a peer sent was not taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refusal {
    /// A request before the peer's hello was accepted.
    Unadmitted,
    /// A request its role may not send.
    RoleMayNot(Role),
    /// Over its budget of this kind (per second).
    OverBudget(f64),
    /// Gossip (an event, a revocation) that did not pass its checks.
    Rejected,
}

impl Refusal {
    /// What a peer refused this way, again and again, is doing (for the cut-off's log).
    pub fn flood(self) -> &'static str {
        match self {
            Refusal::Unadmitted => "requests before its hello",
            Refusal::RoleMayNot(_) => "requests its role may not send",
            Refusal::OverBudget(_) => "requests over its budget",
            Refusal::Rejected => "rejected gossip",
        }
    }
}

/// What becomes of something a peer sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Take,
    /// Not taken; the peer is struck.
    Refuse(Refusal),
    /// Not taken, and the peer has now struck out: cut it off for [`CUT_OFF_FOR`]
    /// (disconnect it, refuse its connections).
    CutOff(Refusal),
}

/// A token bucket: `take` is false once the peer (or the kiosk's own outbox) is over
/// its budget.
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

impl Bucket {
    pub fn new() -> Self {
        Bucket::new_at(Instant::now())
    }

    pub fn new_at(now: Instant) -> Self {
        Bucket {
            // Full: capped to the burst at the first take.
            tokens: f64::INFINITY,
            at: now,
        }
    }

    /// Takes a token at `per_sec` refill and `burst` capacity.
    pub fn take(&mut self, budget: (f64, f64)) -> bool {
        self.take_at(budget, Instant::now())
    }

    /// [`Bucket::take`] at `now`.
    pub fn take_at(&mut self, (per_sec, burst): (f64, f64), now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * per_sec;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long since it was last taken from.
    pub fn idle(&self) -> Duration {
        self.idle_at(Instant::now())
    }

    fn idle_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.at)
    }
}

/// A peer's buckets, and the strikes counted in the current window.
struct Allowance {
    requests: Bucket,
    hellos: Bucket,
    replays: Bucket,
    syncs: Bucket,
    strikes: u32,
    window_from: Instant,
}

impl Allowance {
    fn new(now: Instant) -> Self {
        Allowance {
            requests: Bucket::new_at(now),
            hellos: Bucket::new_at(now),
            replays: Bucket::new_at(now),
            syncs: Bucket::new_at(now),
            strikes: 0,
            window_from: now,
        }
    }

    /// How long since the peer last asked for anything or was struck.
    fn idle(&self, now: Instant) -> Duration {
        [&self.requests, &self.hellos, &self.replays, &self.syncs]
            .iter()
            .map(|b| b.idle_at(now))
            .chain([now.saturating_duration_since(self.window_from)])
            .min()
            .unwrap_or_default()
    }

    /// Counts a strike; true once the peer has had too many in the window.
    fn strike(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_from) > STRIKE_WINDOW {
            self.window_from = now;
            self.strikes = 0;
        }
        self.strikes = self.strikes.saturating_add(1);
        self.strikes > MAX_STRIKES
    }
}

/// The entry for `key` in a map of budgets kept to [`MAX_ALLOWANCES`]: when it is
/// full, entries idle a minute (their buckets full again) go, then the idlest.
pub fn bounded_entry<K: Eq + std::hash::Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    key: K,
    idle: impl Fn(&K, &V) -> Duration,
    new: impl FnOnce() -> V,
) -> &mut V {
    if map.len() >= MAX_ALLOWANCES && !map.contains_key(&key) {
        map.retain(|k, v| idle(k, v) < Duration::from_secs(60));
        let idlest = (map.len() >= MAX_ALLOWANCES)
            .then(|| {
                map.iter()
                    .max_by_key(|(k, v)| idle(k, v))
                    .map(|(k, _)| k.clone())
            })
            .flatten();
        if let Some(idlest) = idlest {
            map.remove(&idlest);
        }
    }
    map.entry(key).or_insert_with(new)
}

/// Budgets, strikes and cut-offs of every peer this node heard from. Budgets outlive
/// a peer's connection (it does not get a fresh one by reconnecting), bounded by
/// [`MAX_ALLOWANCES`].
pub struct Admission {
    limits: LimitsConfig,
    allowances: HashMap<PeerId, Allowance>,
    events: HashMap<Vec<u8>, Bucket>,
    cut_off: HashMap<PeerId, Instant>,
    connected: HashSet<PeerId>,
    /// Per peer: hellos failed in the current window, since when, and how many times
    /// it was cut off for it.
    failed_hellos: HashMap<PeerId, (u32, Instant, u32)>,
}

impl Admission {
    pub fn new(limits: LimitsConfig) -> Admission {
        Admission {
            limits,
            allowances: HashMap::new(),
            events: HashMap::new(),
            cut_off: HashMap::new(),
            connected: HashSet::new(),
            failed_hellos: HashMap::new(),
        }
    }

    /// The peer is connected now (its budget is never the one forgotten) or not.
    pub fn set_connected(&mut self, peer: PeerId, connected: bool) {
        if connected {
            self.connected.insert(peer);
        } else {
            self.connected.remove(&peer);
        }
    }

    fn allowance(&mut self, peer: PeerId, now: Instant) -> &mut Allowance {
        let connected = &self.connected;
        bounded_entry(
            &mut self.allowances,
            peer,
            |p, a| {
                if connected.contains(p) {
                    Duration::ZERO
                } else {
                    a.idle(now)
                }
            },
            || Allowance::new(now),
        )
    }

    /// Strikes the peer for `refusal`: [`Verdict::CutOff`] when that was one too many
    /// (and it is not cut off already).
    pub fn strike(&mut self, peer: PeerId, refusal: Refusal, now: Instant) -> Verdict {
        let flooding = self.allowance(peer, now).strike(now);
        if !flooding || self.cut_off.contains_key(&peer) {
            return Verdict::Refuse(refusal);
        }
        self.cut_off.insert(peer, now + CUT_OFF_FOR);
        Verdict::CutOff(refusal)
    }

    fn take_or_strike(
        &mut self,
        peer: PeerId,
        budget: (f64, f64),
        pick: impl FnOnce(&mut Allowance) -> &mut Bucket,
        now: Instant,
    ) -> Verdict {
        if pick(self.allowance(peer, now)).take_at(budget, now) {
            Verdict::Take
        } else {
            self.strike(peer, Refusal::OverBudget(budget.0), now)
        }
    }

    /// A request on `spec` from `peer`, which said hello as `role` (`None`: it has
    /// not, or was not admitted).
    pub fn request(
        &mut self,
        peer: PeerId,
        role: Option<Role>,
        spec: &Spec,
        now: Instant,
    ) -> Verdict {
        let Some(role) = role else {
            return self.strike(peer, Refusal::Unadmitted, now);
        };
        if !spec.may_send(role) {
            return self.strike(peer, Refusal::RoleMayNot(role), now);
        }
        if !spec.budgeted {
            return Verdict::Take;
        }
        let budget = self.limits.requests(role);
        self.take_or_strike(peer, budget, |a| &mut a.requests, now)
    }

    /// A hello (one per connection).
    pub fn hello(&mut self, peer: PeerId, now: Instant) -> Verdict {
        self.take_or_strike(peer, HELLO_BUDGET, |a| &mut a.hellos, now)
    }

    /// An event this node has already, passed on again by `peer`.
    pub fn replay(&mut self, peer: PeerId, now: Instant) -> Verdict {
        self.take_or_strike(peer, REPLAY_BUDGET, |a| &mut a.replays, now)
    }

    /// A page of this node's log asked for by `peer`.
    pub fn sync_page(&mut self, peer: PeerId, now: Instant) -> Verdict {
        self.take_or_strike(peer, SYNC_BUDGET, |a| &mut a.syncs, now)
    }

    /// Whether an event from `origin` (whose role emits this kind) is within the
    /// origin's budget of events: a member that floods the network with valid events
    /// fills nobody's disk.
    pub fn event(&mut self, origin: &[u8], emitted_by: Role, now: Instant) -> bool {
        let budget = self.limits.events(emitted_by);
        bounded_entry(
            &mut self.events,
            origin.to_vec(),
            |_, b| b.idle_at(now),
            || Bucket::new_at(now),
        )
        .take_at(budget, now)
    }

    pub fn is_cut_off(&self, peer: &PeerId) -> bool {
        self.cut_off.contains_key(peer)
    }

    /// The peers whose cut-off is over at `now` (they may connect again).
    /// A connection of `peer` closed without a hello (it does not speak ours, or
    /// never answers): a peer that keeps redialling is cut off, longer each time, so
    /// its redials cost it a refused connection and us nothing more.
    pub fn hello_failed(&mut self, peer: PeerId, now: Instant) -> Verdict {
        let entry = bounded_entry(
            &mut self.failed_hellos,
            peer,
            |_, v| now.saturating_duration_since(v.1),
            || (0, now, 0),
        );
        if now.saturating_duration_since(entry.1) > HELLO_FAILURE_WINDOW {
            entry.0 = 0;
            entry.1 = now;
        }
        entry.0 = entry.0.saturating_add(1);
        if entry.0 <= MAX_FAILED_HELLOS || self.cut_off.contains_key(&peer) {
            return Verdict::Refuse(Refusal::Rejected);
        }
        entry.0 = 0;
        entry.2 = entry.2.saturating_add(1);
        let factor = 2u32.saturating_pow(entry.2.saturating_sub(1).min(16));
        let cut = CUT_OFF_FOR.saturating_mul(factor).min(MAX_HELLO_CUT_OFF);
        self.cut_off.insert(peer, now + cut);
        Verdict::CutOff(Refusal::Rejected)
    }

    /// How long a peer is cut off, if it is.
    pub fn cut_off_until(&self, peer: &PeerId) -> Option<Instant> {
        self.cut_off.get(peer).copied()
    }

    pub fn cut_offs_over(&mut self, now: Instant) -> Vec<PeerId> {
        let over: Vec<PeerId> = self
            .cut_off
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &over {
            self.cut_off.remove(peer);
        }
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use printmesh_protocol::wire;

    fn admission() -> Admission {
        Admission::new(LimitsConfig::default())
    }

    #[test]
    fn a_peer_that_keeps_failing_its_hello_is_cut_off_longer_each_time() {
        let mut a = admission();
        let (peer, t0) = (PeerId::random(), Instant::now());
        for _ in 0..MAX_FAILED_HELLOS {
            assert_eq!(a.hello_failed(peer, t0), Verdict::Refuse(Refusal::Rejected));
        }
        assert_eq!(a.hello_failed(peer, t0), Verdict::CutOff(Refusal::Rejected));
        assert_eq!(a.cut_off_until(&peer), Some(t0 + CUT_OFF_FOR));
        // Back after its minute, it fails again: two minutes this time.
        let t1 = t0 + CUT_OFF_FOR;
        assert_eq!(a.cut_offs_over(t1), vec![peer]);
        for _ in 0..MAX_FAILED_HELLOS {
            a.hello_failed(peer, t1);
        }
        assert_eq!(a.hello_failed(peer, t1), Verdict::CutOff(Refusal::Rejected));
        assert_eq!(a.cut_off_until(&peer), Some(t1 + CUT_OFF_FOR * 2));
        // A legitimate peer whose hello failed once or twice (a restart) is not.
        let other = PeerId::random();
        a.hello_failed(other, t0);
        a.hello_failed(other, t0 + HELLO_FAILURE_WINDOW + Duration::from_secs(1));
        assert_eq!(a.cut_off_until(&other), None);
    }

    #[test]
    fn requests_are_taken_from_admitted_peers_of_a_role_that_may_send_them() {
        let mut a = admission();
        let (kiosk, now) = (PeerId::random(), Instant::now());
        let order = wire::order::SPEC;
        assert_eq!(
            a.request(kiosk, Some(Role::Kiosk), &order, now),
            Verdict::Take
        );
        assert_eq!(
            a.request(kiosk, None, &order, now),
            Verdict::Refuse(Refusal::Unadmitted)
        );
        assert_eq!(
            a.request(kiosk, Some(Role::Kiosk), &wire::auth::SPEC, now),
            Verdict::Refuse(Refusal::RoleMayNot(Role::Kiosk))
        );
        // Sync has a budget of its own: it never takes from the request budget.
        assert_eq!(
            a.request(kiosk, Some(Role::Kiosk), &wire::sync::SPEC, now),
            Verdict::Take
        );
    }

    #[test]
    fn a_burst_is_taken_then_the_rate_and_a_flood_is_cut_off_for_a_while() {
        let mut a = admission();
        let (kiosk, start) = (PeerId::random(), Instant::now());
        let order = wire::order::SPEC;
        let (per_sec, burst) = LimitsConfig::default().requests(Role::Kiosk);
        let taken = (0..1000)
            .filter(|_| a.request(kiosk, Some(Role::Kiosk), &order, start) == Verdict::Take)
            .count();
        assert_eq!(taken as f64, burst, "the burst, all at once");
        // A second later the rate has refilled.
        let later = start + Duration::from_secs(1);
        let refilled = (0..1000)
            .filter(|_| a.request(kiosk, Some(Role::Kiosk), &order, later) == Verdict::Take)
            .count();
        assert_eq!(refilled as f64, per_sec);
        // The refusals above were strikes: well past MAX_STRIKES in the window.
        assert!(a.is_cut_off(&kiosk));
        assert!(a.cut_offs_over(later + CUT_OFF_FOR / 2).is_empty());
        assert_eq!(a.cut_offs_over(start + CUT_OFF_FOR), vec![kiosk]);
        assert!(!a.is_cut_off(&kiosk));
        // Another peer was served throughout.
        let other = PeerId::random();
        assert_eq!(
            a.request(other, Some(Role::Kiosk), &order, later),
            Verdict::Take
        );
    }

    #[test]
    fn the_strike_that_cuts_off_is_said_once_and_strikes_age_out() {
        let mut a = admission();
        let (peer, now) = (PeerId::random(), Instant::now());
        let verdicts: Vec<Verdict> = (0..=MAX_STRIKES + 5)
            .map(|_| a.strike(peer, Refusal::Unadmitted, now))
            .collect();
        let cut: Vec<usize> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, v)| matches!(v, Verdict::CutOff(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(cut, vec![MAX_STRIKES as usize]);
        // A peer struck now and then (fewer than MAX_STRIKES a window) never is.
        let calm = PeerId::random();
        for window in 0..5u32 {
            let at = now + STRIKE_WINDOW * (2 * window + 1);
            for _ in 0..MAX_STRIKES {
                assert!(matches!(
                    a.strike(calm, Refusal::Unadmitted, at),
                    Verdict::Refuse(_)
                ));
            }
        }
    }

    #[test]
    fn an_origins_events_are_within_the_budget_of_the_role_that_emits_them() {
        let mut a = admission();
        let now = Instant::now();
        let (_, burst) = LimitsConfig::default().events(Role::Kiosk);
        let kept = (0..1000)
            .filter(|_| a.event(b"kiosk", Role::Kiosk, now))
            .count();
        assert_eq!(kept as f64, burst);
        assert!(
            a.event(b"lab", Role::Lab, now),
            "another origin has its own"
        );
    }

    #[test]
    fn budgets_are_bounded_and_the_connected_are_kept() {
        let mut a = admission();
        let now = Instant::now();
        let kept = PeerId::random();
        a.set_connected(kept, true);
        assert_eq!(a.hello(kept, now), Verdict::Take);
        for i in 0..MAX_ALLOWANCES + 10 {
            let _ = a.hello(PeerId::random(), now + Duration::from_millis(i as u64));
        }
        assert!(a.allowances.len() <= MAX_ALLOWANCES);
        assert!(a.allowances.contains_key(&kept));
    }
}
