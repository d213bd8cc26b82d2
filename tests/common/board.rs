//! A keyed snapshot as a board (key → content and seq), and live messages applied to it: the
//! state a trading screen keeps, to compare what a subscriber saw with what was published.

use std::collections::BTreeMap;

use serde_json::Value;

/// Key → (content, seq of the message that set it).
pub type Board = BTreeMap<String, (Value, u64)>;

/// The board a `{"type":"snapshot"}` message describes. Asserts the entries come least
/// recently updated first, one per seq, each with a key.
pub fn board_of(snapshot: &Value) -> Board {
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let entries = snapshot["entries"].as_array().expect("entries");
    let seqs: Vec<u64> = entries
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "entries come least recently updated first, one per seq: {snapshot}"
    );
    entries
        .iter()
        .map(|e| {
            let key = e["key"].as_str().expect("keyed").to_string();
            (key, (e["content"].clone(), e["seq"].as_u64().expect("seq")))
        })
        .collect()
}

/// Applies one live keyed message (`"delete":true` removes its key).
pub fn apply(board: &mut Board, msg: &Value) {
    let key = msg["key"].as_str().expect("live messages carry their key");
    if msg["delete"] == true {
        board.remove(key);
    } else {
        let seq = msg["seq"].as_u64().expect("seq");
        board.insert(key.to_string(), (msg["content"].clone(), seq));
    }
}
