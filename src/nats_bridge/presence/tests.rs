//! Presence deltas, lists and payloads between relays.

use super::*;

fn m(id: &str) -> Member {
    Member {
        id: Arc::from(id),
        sub: None,
    }
}

fn ids(changes: &[(bool, Member)]) -> Vec<(bool, &str)> {
    changes.iter().map(|(j, m)| (*j, &*m.id)).collect()
}

#[test]
fn deltas_and_lists_keep_a_relays_members_and_detect_a_lost_change() {
    let mut r = Remote::default();
    let mut out = Vec::new();
    // Its first message on a fresh channel state: prev 0.
    assert!(!apply_delta(&mut r, true, 5, 0, vec![m("x/1")], &mut out));
    assert!(!apply_delta(&mut r, true, 9, 5, vec![m("x/2")], &mut out));
    assert_eq!(ids(&out), [(true, "x/1"), (true, "x/2")]);
    // Counter 12 came after 9 but said its previous was 10: one change was lost.
    out.clear();
    assert!(apply_delta(&mut r, false, 12, 10, vec![m("x/1")], &mut out));
    assert_eq!(ids(&out), [(false, "x/1")]);
    // The list asked again replaces the members: the difference is told.
    out.clear();
    apply_list(&mut r, true, false, 12, vec![m("x/2")], &mut out);
    assert!(out.is_empty(), "a list in parts is applied at its end");
    apply_list(&mut r, false, true, 12, vec![m("x/3")], &mut out);
    assert_eq!(ids(&out), [(true, "x/3")]);
    assert_eq!(r.last, 12);
    // Its state of the channel was dropped and made again: what we held is gone.
    out.clear();
    assert!(!apply_delta(&mut r, true, 20, 0, vec![m("x/4")], &mut out));
    assert_eq!(ids(&out), [(false, "x/2"), (false, "x/3"), (true, "x/4")]);
}

#[test]
fn members_round_trip_and_bad_payloads_are_refused() {
    let mut p = Vec::new();
    put(&mut p, b"room.1");
    put_member(
        &mut p,
        &Member {
            id: Arc::from("a.x/0-1-1"),
            sub: None,
        },
    );
    put_member(
        &mut p,
        &Member {
            id: Arc::from("a.x/0-2-1"),
            sub: Some(Arc::from("alice")),
        },
    );
    let (channel, members) = decode(&p).expect("decodes");
    assert_eq!(channel, "room.1");
    assert_eq!(members.len(), 2);
    assert_eq!(members[1].sub.as_deref(), Some("alice"));
    assert!(members[0].sub.is_none());
    assert!(decode(&p[..p.len() - 1]).is_none(), "truncated");
    let mut odd = Vec::new();
    put(&mut odd, b"room.1");
    put(&mut odd, b"only-an-id");
    assert!(decode(&odd).is_none(), "an id without its subject");
    let mut long = Vec::new();
    put(&mut long, &vec![b'x'; FIELD_BYTES_MAX + 2]);
    assert!(decode(&long).is_none(), "over the field limit");
}
