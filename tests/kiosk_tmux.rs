//! The real kiosk binary in a real terminal: `printmesh kiosk --config FILE` runs in a
//! tmux pane of 80×24 against an acquirer, a lab and an intermediary running as
//! separate processes. The test does what a customer does (inserts a memory card,
//! picks photos, pays by debit card with a wrong PIN and then the right one) by
//! sending keys, and reads the screen with `capture-pane`. Afterwards it checks the
//! receipt files, the acquirer's records and every log for card data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::{
    acquirer_config, acquirer_key_file, bin, files_below, fixtures, inspect, intermediary_config,
    lab_config, write_config, NodeProc, Tmux,
};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_customer_orders_prints_at_the_kiosk_screen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = fixtures();
    let network = format!("tmux-{}", std::process::id());
    let acquirer_cfg = acquirer_config(d, &network);
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let lab = NodeProc::start(
        "lab",
        &lab_config(d, &network, r#"["mon", "tue", "wed", "thu", "fri", "sat"]"#),
        d,
    );
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let intermediary_cfg = intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);

    let slot = d.join("slot");
    std::fs::create_dir_all(&slot).unwrap();
    let section = format!(
        "[kiosk]\nstore = \"store-test\"\nstore_name = \"Test Store\"\nprices = \"{}\"\nmedia_dir = \"{}\"\nacquirer_key_file = \"{}\"\nlanguage = \"en\"\nstaff_pin = \"2468\"\nreceipt_printer = {{ kind = \"file\", dir = \"{}\" }}",
        fx.join("demo/prices.toml").display(),
        slot.display(),
        acquirer_key_file(d).display(),
        d.join("printer").display(),
    );
    let kiosk_cfg = write_config(
        d,
        "kiosk",
        &network,
        &[intermediary.addrs[0].clone()],
        &section,
    );

    let tmux = Tmux::start(
        &format!(
            "RUST_LOG=info {} kiosk --config {}",
            bin(),
            kiosk_cfg.display()
        ),
        80,
        24,
    );
    tmux.wait_for("Please insert your camera's memory card");
    tmux.wait_for("● online");

    // S501: the customer inserts the memory card (it appears in the slot whole).
    let staging = d.join("staging");
    copy_dir(&fx.join("memory-card"), &staging);
    std::fs::rename(staging.join("MISC"), slot.join("MISC")).unwrap();
    std::fs::rename(staging.join("DCIM"), slot.join("DCIM")).unwrap();

    // S502: the camera's DPOF order is picked; add three prints of photo 2.
    let screen = tmux.wait_for("Choose the photos to print");
    assert!(screen.contains("Photo 1 of 6"), "{screen}");
    tmux.wait_for("2 photos · 3 prints");
    tmux.keys(&["Right", "3"]);
    tmux.wait_for("3 photos · 6 prints");
    tmux.keys(&["Down", "Down", "Enter"]);
    // S503: every photo as 2L.
    tmux.wait_for("Choose the size and number of prints");
    tmux.keys(&["Right"]);
    tmux.wait_for("2L 127×178 mm");
    tmux.keys(&["Down", "Down", "Down", "Down", "Enter"]);
    // S504: 6 × 2L at 80 yen.
    let screen = tmux.wait_for("Please check your order");
    assert!(screen.contains("Total (tax included)  ¥480"), "{screen}");
    tmux.keys(&["Enter"]);
    // S505-S506: debit, swiped through a keyboard-wedge reader.
    tmux.wait_for("How would you like to pay?");
    tmux.keys(&["2"]);
    tmux.wait_for("Please swipe your card through the reader");
    tmux.type_text(
        "%B4000056655665556^PRINTMESH/TEST DEBIT^31061010000000000000?;4000056655665556=31061010000000000000?",
    );
    tmux.keys(&["Enter"]);
    // S507: a wrong PIN first; the acquirer says so; then the right one.
    let screen = tmux.wait_for("Please enter your PIN");
    assert!(screen.contains("VISA •••• 5556"), "{screen}");
    tmux.keys(&["9", "9", "9", "9"]);
    assert!(tmux.wait_for("● ● ● ●").contains("● ● ● ●"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("That PIN was not correct. You can try 2 more times");
    tmux.keys(&["5", "6", "7", "8", "Enter"]);

    // S508: the delivery date and the pickup store.
    let screen = tmux.wait_for("Your prints will be ready on");
    assert!(screen.contains("Collect them at: Test Store"), "{screen}");
    let order_id = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("Order number "))
        .unwrap()
        .trim()
        .to_string();
    let approval = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("Approval code "))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(order_id.len(), 26, "{screen}");
    let date_line = screen
        .lines()
        .skip_while(|l| !l.contains("Your prints will be ready on"))
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        date_line.ends_with(" 2026") || date_line.ends_with(" 2027"),
        "{date_line}"
    );

    // S509: the receipt, on screen and on the printer.
    tmux.keys(&["Enter"]);
    tmux.wait_for("Your receipt has been printed");
    let text =
        std::fs::read_to_string(d.join("kiosk/receipts").join(format!("{order_id}.txt"))).unwrap();
    for want in [
        order_id.as_str(),
        "Test Store",
        "VISA **** 5556",
        approval.as_str(),
        "Debit card",
        "¥480",
        date_line.as_str(),
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing from the receipt:\n{text}"
        );
    }
    let escpos = std::fs::read(d.join("printer").join(format!("{order_id}.escpos"))).unwrap();
    assert!(escpos.windows(26).any(|w| w == order_id.as_bytes()));
    assert!(escpos.ends_with(&[0x1d, b'V', 66, 0]), "the paper is cut");

    // S510, and back to S501 when the memory card is taken.
    tmux.keys(&["Enter"]);
    tmux.wait_for("Thank you for your order");
    std::fs::remove_dir_all(slot.join("DCIM")).unwrap();
    tmux.wait_for("Please insert your camera's memory card");
    drop(tmux);

    intermediary.stop();
    lab.stop();
    acquirer.stop();

    // The acquirer: the wrong PIN declined (55) with no hold, the right one held.
    let acq = inspect(&acquirer_cfg);
    let auths = acq["authorisations"].as_array().unwrap();
    assert_eq!(auths.len(), 2, "{acq:#}");
    assert!(auths
        .iter()
        .any(|a| a["code"] == "55" && a["hold"] == "none"));
    let held = auths
        .iter()
        .find(|a| a["order_id"] == order_id.as_str())
        .unwrap();
    assert_eq!(
        (held["hold"].as_str(), held["amount_minor"].as_i64()),
        (Some("held"), Some(480))
    );
    assert_eq!(held["code"], approval.as_str());
    // The kiosk kept the answer it showed.
    let kiosk = inspect(&kiosk_cfg);
    let kept = kiosk["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["order_id"] == order_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(kept["auth_code"], approval.as_str());
    assert_eq!(kiosk["outbox"].as_array().unwrap().len(), 0);

    // No full card number, track or PIN in any log or receipt.
    let mut scanned = 0;
    for file in files_below(d) {
        let name = file.to_string_lossy();
        if name.ends_with(".log") || name.contains("receipts") || name.contains("printer") {
            let bytes = std::fs::read(&file).unwrap();
            for secret in ["4000056655665556", "PRINTMESH/TEST DEBIT", "=3106101"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} found in {name}"
                );
            }
            scanned += 1;
        }
    }
    assert!(scanned >= 6, "scanned {scanned} files");
    assert!(d.join("kiosk/kiosk.log").exists());
}
