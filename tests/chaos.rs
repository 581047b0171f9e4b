//! The seeded fault run (`printmesh chaos`) over separate processes, for two fixed
//! seeds (3 orders a kiosk): the first kills an intermediary, then crashes it right
//! after a lab accepted a job and a lab right after accepting one; the second kills a
//! lab, crashes it between recording a shipment and announcing it, pauses an
//! intermediary and crashes another lab after an acceptance. `printmesh chaos --seeds
//! N` runs more (random) seeds; a failing one prints the command that reproduces it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::run;

#[test]
fn seeded_faults_leave_every_invariant_standing() {
    for seed in ["2001721030", "2001721031"] {
        let (ok, text) = run(&["chaos", "--seed", seed, "--orders", "3"]);
        println!("{text}");
        assert!(ok, "seed {seed} violated an invariant:\n{text}");
        assert!(text.contains("1 of 1 seeds clean"), "{text}");
        assert!(
            text.contains("checked: lab fees paid = lab fees received"),
            "{text}"
        );
    }
}
