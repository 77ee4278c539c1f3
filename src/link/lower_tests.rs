use super::*;
use crate::link::fake_sysfs::{Tree, FILOGIC, MT7621, X86};

fn none(_: &str) -> bool {
    false
}

#[test]
fn dsa_ports_are_kept_and_the_conduit_never_named() {
    let t = Tree::new("mt7621", MT7621);
    // The conduit has hw-tc-offload (the PPE sits on its MAC); it is still never reached.
    let conduit = |d: &str| d == "eth0";
    assert_eq!(
        lower_devices(&t.0, "br-lan", &conduit),
        ["lan1", "lan2", "lan3", "lan4"]
    );
    assert_eq!(lower_devices(&t.0, "wan.7", &conduit), ["wan"]);
    assert_eq!(lower_devices(&t.0, "wan", &conduit), ["wan"]);
    assert_eq!(lower_devices(&t.0, "pppoe-wan", &conduit), ["pppoe-wan"]);
}

#[test]
fn wifi_in_the_bridge_is_a_port_like_the_others() {
    let t = Tree::new("filogic", FILOGIC);
    assert_eq!(
        lower_devices(&t.0, "br-lan", &none),
        ["lan1", "lan2", "lan3", "phy0-ap0"]
    );
    assert_eq!(lower_devices(&t.0, "eth1", &none), ["eth1"]);
}

#[test]
fn bridges_and_vlans_of_plain_nics_resolve_to_the_nics() {
    let t = Tree::new("x86", X86);
    assert_eq!(lower_devices(&t.0, "br-lan", &none), ["eth1", "eth2"]);
    assert_eq!(lower_devices(&t.0, "eth1.400", &none), ["eth1"]);
    assert_eq!(lower_devices(&t.0, "wg0", &none), ["wg0"]);
}

#[test]
fn a_device_with_hw_tc_offload_is_kept_itself() {
    let t = Tree::new("hwtc", X86);
    // A driver that offloads the VLAN itself (switchdev, mlx5 with VLAN offload).
    let vlan_capable = |d: &str| d == "eth1.400";
    assert_eq!(lower_devices(&t.0, "eth1.400", &vlan_capable), ["eth1.400"]);
}

#[test]
fn macvlans_like_dsa_ports_are_not_descended() {
    // The VM's DSA stand-in: macvlan ports on a veth, bridged.
    let t = Tree::new(
        "macvlan",
        &[
            ("veth0", "", &[]),
            ("lan1", "", &["veth0"]),
            ("lan2", "", &["veth0"]),
            ("br-lan", "bridge", &["lan1", "lan2"]),
        ],
    );
    assert_eq!(lower_devices(&t.0, "br-lan", &none), ["lan1", "lan2"]);
}

#[test]
fn unknown_devices_loops_empty_bridges_and_bad_names_end() {
    let t = Tree::new(
        "loop",
        &[
            ("a", "bridge", &["b"]),
            ("b", "vlan", &["a"]),
            ("br-empty", "bridge", &[]),
        ],
    );
    assert_eq!(lower_devices(&t.0, "nosuch", &none), ["nosuch"]);
    assert_eq!(lower_devices(&t.0, "../..", &none), ["../.."]);
    assert!(lower_devices(&t.0, "br-empty", &none).is_empty());
    // a -> b -> a -> ... stops at the depth limit instead of recursing forever.
    let l = lower_devices(&t.0, "a", &none);
    assert!(l.len() == 1 && (l[0] == "a" || l[0] == "b"), "{l:?}");
}
