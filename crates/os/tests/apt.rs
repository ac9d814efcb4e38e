//! The apt adapter against a real apt and dpkg in a throwaway Debian chroot with a local
//! repository of tiny packages in versions 1 and 2 (testkit::debian): status with security
//! origins, holds and kept-back packages; an upgrade of the chosen set that keeps an edited
//! conffile and reports it; reboot-required from a postinst; an interrupted dpkg.

use caretaker_core::os::{select, Skip};
use caretaker_os::{Apt, OsError, PackageManager, System, UpgradeOptions};
use caretaker_testkit::debian::TestChroot;
use std::time::Duration;

fn system(c: &TestChroot) -> System {
    System { root: Some(c.root.clone()), ..System::default() }
}

#[test]
fn status_then_upgrade_of_the_chosen_packages() {
    let Some(c) = TestChroot::with_standard_packages() else { return };
    let apt = Apt::new(system(&c));
    apt.refresh(&mut |_| {}).unwrap();
    let st = apt.status().unwrap();
    let names: Vec<&str> = st.upgradable.iter().map(|u| u.name.as_str()).collect();
    for p in ["ct-plain", "ct-sec", "ct-conf", "ct-kept", "ct-held", "ct-appdep", "ct-reboot"] {
        assert!(names.contains(&p), "{p} upgradable: {names:?}");
    }
    let sec: Vec<&str> = st.upgradable.iter().filter(|u| u.is_security()).map(|u| u.name.as_str()).collect();
    assert_eq!(sec, ["ct-sec"]);
    assert_eq!(st.held, ["ct-held"]);
    assert_eq!(st.kept_back, ["ct-kept"]);
    assert!(st.interrupted.is_empty());

    let os = caretaker_core::config::Os::default();
    let only_sec = select(&st.upgradable, &st.held, &st.kept_back, &os, true);
    assert_eq!(only_sec.names(), ["ct-sec"]);

    let sel = select(&st.upgradable, &st.held, &st.kept_back, &os, false);
    let mut chosen = sel.names();
    chosen.sort();
    assert_eq!(chosen, ["ct-appdep", "ct-conf", "ct-plain", "ct-reboot", "ct-sec"]);
    assert_eq!(sel.skipped_for(&Skip::KeptBack), ["ct-kept"]);
    assert_eq!(sel.skipped_for(&Skip::Held), ["ct-held"]);
    // The kept-back package would pull in a new one: the simulation shows it.
    let sim = apt.simulate(&["ct-kept".to_string()]).unwrap();
    assert!(sim.contains(&"ct-newdep".to_string()), "{sim:?}");
    assert_eq!(caretaker_core::os::unplanned(&["ct-kept".into()], &sim), ["ct-newdep"]);
    let mut sim = apt.simulate(&chosen).unwrap();
    sim.sort();
    assert_eq!(sim, chosen);

    // The admin edited a conffile that version 2 changes.
    std::fs::write(c.root.join("etc/ct-conf.conf"), "setting = mine\n").unwrap();
    let before = system(&c).facts();
    assert!(!before.reboot_required);
    apt.preflight().unwrap();
    let mut log = Vec::new();
    let report = apt
        .upgrade(&chosen, &UpgradeOptions { lock_timeout: Duration::from_secs(30) }, &mut |l| log.push(l.to_string()))
        .unwrap();
    let log = log.join("\n");
    assert!(log.contains("--force-confold") && log.contains("DPkg::Lock::Timeout=30"), "{log}");
    assert_eq!(report.conffiles_kept.len(), 1, "{report:?}\n{log}");
    assert_eq!(report.conffiles_kept[0].package, "ct-conf");
    assert_eq!(report.conffiles_kept[0].path, "/etc/ct-conf.conf");
    assert_eq!(std::fs::read_to_string(c.root.join("etc/ct-conf.conf")).unwrap(), "setting = mine\n", "kept");
    assert!(c.root.join("etc/ct-conf.conf.dpkg-dist").exists());
    for p in &chosen {
        assert_eq!(c.version(p), "2.0", "{p}");
    }
    assert_eq!(c.version("ct-kept"), "1.0");
    assert_eq!(c.version("ct-held"), "1.0");
    assert_eq!(c.version("ct-newdep"), "");
    // ct-plain was installed as a dependency (auto); naming it to apt-get did not change that.
    assert!(c.run("apt-mark showauto").lines().any(|l| l == "ct-plain"));

    let after = system(&c).facts();
    assert!(after.reboot_required, "ct-reboot's postinst asked for a reboot");
    assert_eq!(after.reboot_required_packages, ["ct-reboot"]);
    assert!(after.reboot_needed());
    assert!(after.last_package_change.is_some());

    let st = apt.status().unwrap();
    let left: Vec<&str> = st.upgradable.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(left, ["ct-held", "ct-kept"]);
}

/// One chroot for both bad states (a setup costs seconds): an interrupted dpkg, then, once
/// repaired, broken dependencies.
#[test]
fn an_interrupted_dpkg_and_broken_dependencies_are_refused() {
    let Some(c) = TestChroot::with_standard_packages() else { return };
    let apt = Apt::new(system(&c));
    apt.preflight().unwrap();
    // A package left unpacked but not configured, as after a power cut mid-upgrade.
    c.run("dpkg --unpack /srv/repo/main/ct-plain_2.0_all.deb >/dev/null 2>&1");
    match apt.preflight() {
        Err(OsError::Interrupted { packages, .. }) => assert_eq!(packages, ["ct-plain"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(apt.status().unwrap().interrupted, ["ct-plain"]);
    c.run("dpkg --configure -a >/dev/null 2>&1");
    apt.preflight().unwrap();
    // A package forced in without its dependency.
    c.run("dpkg --force-depends -i /srv/repo/main/ct-kept_2.0_all.deb >/dev/null 2>&1 || true");
    let err = apt.preflight().unwrap_err();
    assert!(matches!(err, OsError::Broken { .. } | OsError::Interrupted { .. }), "{err:?}");
    assert!(err.to_string().contains("ct-kept") || err.to_string().contains("ct-newdep"), "{err}");
}
