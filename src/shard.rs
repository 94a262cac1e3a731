//! Which core owns a room.
//!
//! `owner = fnv1a64(party + "/" + room) % cores`: FNV-1a, 64-bit, offset basis
//! 0xcbf29ce484222325, prime 0x100000001b3, over the raw UTF-8 bytes of the party name, one `/`,
//! and the raw (undecoded) room id. It is a pure function of its inputs: the same on every run,
//! process, machine and build, which durable storage (a core's log holds its rooms) and multi-node
//! routing (a load balancer hashing the same key) rely on. Changing it moves every room: don't.
//!
//! `/` cannot occur inside a party name or a room id (both are single path segments), so
//! `party/room` is unambiguous.

/// FNV-1a 64-bit of `party + "/" + room`.
pub fn room_hash(party: &str, room: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let step = |h: u64, b: &u8| (h ^ u64::from(*b)).wrapping_mul(PRIME);
    let h = party.as_bytes().iter().fold(OFFSET, step);
    let h = step(h, &b'/');
    room.as_bytes().iter().fold(h, step)
}

/// The core (0-based) that owns room `room` of party `party` among `cores` cores.
pub fn owner(party: &str, room: &str, cores: usize) -> usize {
    debug_assert!(cores > 0);
    (room_hash(party, room) % cores as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Pinned: these must never change (see the module note).
        // An external contract: a load balancer hashing `party/room` the same way (docs/deploy.md)
        // must agree with these, and a data directory's logs hold the rooms of these owners.
        // Values computed independently (a 5-line FNV-1a in Python) from the module note.
        assert_eq!(room_hash("", ""), 0xaf63_a24c_8601_89fe); // FNV-1a of "/"
        assert_eq!(room_hash("main", "r1"), 0x0397_6ef5_f623_a24c);
        assert_eq!(room_hash("main", "lobby"), 0xcd47_f21d_cae1_a213);
        assert_eq!(room_hash("chat", "general"), 0x4a38_f7a0_c7c3_3784);
        assert_eq!(room_hash("yjs", "doc-1"), 0x6ada_4c31_cacc_3804);
        assert_eq!(room_hash("main", "room-2"), 0xc544_6412_ed7a_0745);
        assert_eq!(room_hash("main", "room-3"), 0xc544_6312_ed7a_0592);
        assert_eq!(room_hash("echo", "ping"), 0xe4d1_96c7_426b_ae05);
        assert_eq!(room_hash("chat", "random"), 0xbb00_bd8e_7726_0da3);
        assert_ne!(room_hash("ma", "in/r1"), room_hash("main", "r1"));
        // (party, room) -> owner among 2, 3, 4 and 8 cores; every core of 2 and of 4 is hit.
        for (party, room, owners) in [
            ("main", "r1", [0, 2, 0, 4]),
            ("main", "lobby", [1, 0, 3, 3]),
            ("chat", "general", [0, 2, 0, 4]),
            ("yjs", "doc-1", [0, 0, 0, 4]),
            ("main", "room-2", [1, 2, 1, 5]),
            ("main", "room-3", [0, 1, 2, 2]),
            ("echo", "ping", [1, 1, 1, 5]),
            ("chat", "random", [1, 2, 3, 3]),
        ] {
            for (cores, want) in [2, 3, 4, 8].into_iter().zip(owners) {
                assert_eq!(owner(party, room, cores), want, "{party}/{room} on {cores}");
            }
            assert_eq!(owner(party, room, 1), 0);
        }
    }

    #[test]
    fn spreads_rooms_over_cores() {
        for cores in [2usize, 3, 4, 8] {
            let mut counts = vec![0usize; cores];
            for i in 0..10_000 {
                counts[owner("main", &format!("room-{i}"), cores)] += 1;
            }
            let expected = 10_000 / cores;
            for c in counts {
                assert!(
                    c > expected * 9 / 10 && c < expected * 11 / 10,
                    "{cores}: {c}"
                );
            }
        }
    }
}
