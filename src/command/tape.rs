//! Walking the top level of a simd-json tape: shared by the command decoder (client → server)
//! and the client library's server-event parser (server → client), so both read JSON objects
//! the same way: one pass over the root object's members, nested values skipped by node count.

use simd_json::Node;

/// A top-level member: its position in the object and its value's tape node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    /// Position among the root object's members.
    pub ordinal: usize,
    /// The root object's last member (its value ends at the closing brace).
    pub is_last: bool,
    /// The value.
    pub value: Node<'a>,
}

/// Calls `visit(name, member)` for each member of the root object, in order. The root must be
/// an object (`not_object` otherwise); a tape that does not have the expected shape yields
/// `malformed`. The first error `visit` returns stops the walk.
pub(crate) fn for_each_member<'a, E>(
    nodes: &[Node<'a>],
    (not_object, malformed): (E, E),
    mut visit: impl FnMut(&'a str, Member<'a>) -> Result<(), E>,
) -> Result<(), E> {
    let Some(&Node::Object { len, .. }) = nodes.first() else {
        return Err(not_object);
    };
    let mut index = 1;
    for ordinal in 0..len {
        let (Some(Node::String(name)), Some(&value)) = (nodes.get(index), nodes.get(index + 1))
        else {
            return Err(malformed);
        };
        let is_last = ordinal + 1 == len;
        visit(
            name,
            Member {
                ordinal,
                is_last,
                value,
            },
        )?;
        index += 1 + node_span(value);
    }
    Ok(())
}

/// Number of tape nodes a value occupies, itself included.
pub(crate) fn node_span(node: Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        Node::String(_) | Node::Static(_) => 1,
    }
}
