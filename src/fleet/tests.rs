use super::*;

fn fleet(size: usize, me: usize) -> Arc<Fleet> {
    let members = (0..size).map(|n| format!("https://m{n}.lan:5000").parse().expect("uri"));
    Fleet::new(&FleetConfig {
        members: members.collect(),
        me,
        key: "0123456789abcdef".into(),
        ca: None,
    })
}

fn digest(n: u32) -> String {
    crate::digest::Digest::sha256_of(n.to_string().as_bytes()).to_string()
}

#[test]
fn every_member_agrees_on_each_digests_owner() {
    let fleets: Vec<_> = (0..3).map(|me| fleet(3, me)).collect();
    let mut owned = [0usize; 3];
    for n in 0..300 {
        let owners: Vec<usize> = fleets.iter().map(|f| f.order(&digest(n))[0]).collect();
        assert!(owners.windows(2).all(|w| w[0] == w[1]), "{n}: {owners:?}");
        owned[owners[0]] += 1;
        // The owner's own order is itself alone: it fetches from the upstream.
        assert_eq!(fleets[owners[0]].order(&digest(n)), vec![owners[0]]);
    }
    // Spread over all three, roughly evenly.
    assert!(owned.iter().all(|&count| count > 60), "{owned:?}");
}

#[test]
fn a_member_down_hands_on_its_blobs_and_only_its_blobs() {
    let me = fleet(3, 2);
    let before: Vec<Vec<usize>> = (0..200).map(|n| me.order(&digest(n))).collect();
    me.set_up(0, false);
    for (n, order) in before.iter().enumerate() {
        let after = me.order(&digest(n as u32));
        let expected: Vec<usize> = order.iter().copied().filter(|&m| m != 0).collect();
        assert_eq!(after, expected);
        assert_eq!(after.last(), Some(&2), "this instance always ends the order");
    }
    me.set_up(0, true);
    assert_eq!(me.order(&digest(7)), before[7]);
}

#[test]
fn only_the_fleets_key_is_a_members() {
    let fleet = fleet(2, 0);
    assert!(fleet.is_key(b"0123456789abcdef"));
    assert!(!fleet.is_key(b"0123456789abcdeF"));
    assert!(!fleet.is_key(b""));
}
