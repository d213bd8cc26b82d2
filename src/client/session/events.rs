//! From a decoded server event to the application's owned `Event`, and the per-channel
//! position (last seq, epoch) each delivery, subscribe answer or gap notice moves.

use indexmap::IndexMap;

use super::ChannelPosition;
use crate::client::event::Event;
use crate::client::server_event::{
    binary_batch_entries, parse_binary, BinaryEvent, PresenceMember, ServerEvent,
    ServerEventParser, SnapshotItem,
};

/// Parses a text message, advances the channel position, and builds the owned event.
pub(super) fn text_event(
    parser: &mut ServerEventParser,
    subscriptions: &mut IndexMap<String, ChannelPosition>,
    text: &str,
) -> Event {
    let (event, nested) = match parser.parse(text) {
        Ok(ServerEvent::Snapshot {
            channel,
            seq,
            epoch,
            entries,
        }) => {
            advance(subscriptions, channel, seq);
            let (channel, epoch) = (channel.to_owned(), epoch.to_owned());
            let entries = entries.to_owned();
            return match parser.snapshot_entries(&entries) {
                Ok(entries) => Event::Snapshot {
                    channel,
                    seq,
                    epoch,
                    entries,
                },
                Err(_) => Event::UnknownText(text.to_owned()),
            };
        }
        Ok(event) => {
            track_position(subscriptions, &event);
            (owned_event(event), nested_range(&event))
        }
        Err(_) => return Event::UnknownText(text.to_owned()),
    };
    match nested.and_then(|(start, end)| text.get(start..end)) {
        Some(json) => complete_nested(parser, subscriptions, event, json)
            .unwrap_or_else(|| Event::UnknownText(text.to_owned())),
        None => event,
    }
}

/// Where a batch's messages or a presence message's members are in the text.
fn nested_range(event: &ServerEvent<'_>) -> Option<(usize, usize)> {
    match *event {
        ServerEvent::Batch { messages, .. } => Some(messages),
        ServerEvent::Presence { members, .. } => Some(members),
        ServerEvent::PresenceChange { member, .. } => Some(member),
        _ => None,
    }
}

/// Reads the nested part (`json`) of a batch or presence event into it; `None` when it does
/// not parse.
fn complete_nested(
    parser: &mut ServerEventParser,
    subscriptions: &mut IndexMap<String, ChannelPosition>,
    mut event: Event,
    json: &str,
) -> Option<Event> {
    match &mut event {
        Event::Batch { channel, messages } => {
            *messages = parser.batch_entries(json).ok()?;
            if let Some(last) = messages.last() {
                advance(subscriptions, channel, last.seq);
            }
        }
        Event::Presence { members, .. } => *members = parser.members(json).ok()?,
        Event::Join { member, .. } | Event::Leave { member, .. } => {
            *member = parser.members(json).ok()?.pop()?;
        }
        _ => {}
    }
    Some(event)
}

/// A binary snapshot as an event (`None`: malformed).
fn binary_snapshot(
    subscriptions: &mut IndexMap<String, ChannelPosition>,
    bytes: &[u8],
) -> Option<Event> {
    let (head, entries) = crate::command::decode_binary_snapshot(bytes)?;
    advance(subscriptions, head.channel, head.seq);
    let entries = entries
        .into_iter()
        .map(|e| SnapshotItem {
            key: e.key.map(str::to_owned),
            content: e.content.to_vec(),
            seq: e.seq,
            binary: e.binary,
        })
        .collect();
    Some(Event::Snapshot {
        channel: head.channel.to_owned(),
        seq: head.seq,
        epoch: head.epoch.to_owned(),
        entries,
    })
}

fn track_position(subscriptions: &mut IndexMap<String, ChannelPosition>, event: &ServerEvent<'_>) {
    match *event {
        ServerEvent::Subscribed {
            channel,
            seq,
            epoch,
            recovered,
            ..
        } => {
            if let Some(position) = subscriptions.get_mut(channel) {
                position.on_subscribed(seq, epoch, recovered);
            }
        }
        ServerEvent::Message { channel, seq, .. } => advance(subscriptions, channel, seq),
        ServerEvent::Gap { channel, to, .. } => advance(subscriptions, channel, to),
        _ => {}
    }
}

fn owned_event(event: ServerEvent<'_>) -> Event {
    match event {
        ServerEvent::Connected { id } => Event::Connected { id: id.to_owned() },
        ServerEvent::Subscribed {
            channel,
            seq,
            epoch,
            recovered,
            throttle_ms,
        } => Event::Subscribed {
            channel: channel.to_owned(),
            seq,
            epoch: epoch.to_owned(),
            recovered,
            throttle_ms,
        },
        ServerEvent::Snapshot { .. }
        | ServerEvent::Batch { .. }
        | ServerEvent::Presence { .. }
        | ServerEvent::PresenceChange { .. } => owned_shell(event),
        ServerEvent::Unsubscribed { channel } => Event::Unsubscribed {
            channel: channel.to_owned(),
        },
        ServerEvent::Message {
            channel,
            content,
            from,
            seq,
            key,
            delete,
        } => Event::Message {
            channel: channel.to_owned(),
            content: content.to_owned(),
            from: from.to_owned(),
            seq,
            key: key.map(str::to_owned),
            delete,
        },
        ServerEvent::Gap { channel, from, to } => Event::Gap {
            channel: channel.to_owned(),
            from,
            to,
        },
        ServerEvent::Pong => Event::Pong,
        ServerEvent::Authenticated { sub } => Event::Authenticated {
            sub: sub.to_owned(),
        },
        ServerEvent::Error { message } => Event::ServerError {
            message: message.to_owned(),
        },
    }
}

/// The owned event of a message that carries a nested list, with the list empty:
/// `complete_nested` fills it from `nested_range`. A snapshot (and any other event) gives a
/// placeholder: `text_event` builds snapshots whole, as their entries need the parser.
fn owned_shell(event: ServerEvent<'_>) -> Event {
    match event {
        ServerEvent::Batch { channel, .. } => Event::Batch {
            channel: channel.to_owned(),
            messages: Vec::new(),
        },
        ServerEvent::Presence { channel, count, .. } => Event::Presence {
            channel: channel.to_owned(),
            count,
            members: Vec::new(),
        },
        ServerEvent::PresenceChange {
            joined, channel, ..
        } => {
            let (channel, member) = (channel.to_owned(), PresenceMember::default());
            match joined {
                true => Event::Join { channel, member },
                false => Event::Leave { channel, member },
            }
        }
        _ => Event::UnknownText(String::new()),
    }
}

pub(super) fn binary_event(
    subscriptions: &mut IndexMap<String, ChannelPosition>,
    bytes: &[u8],
) -> Event {
    if bytes.first() == Some(&crate::command::BINARY_OP_SNAPSHOT) {
        return binary_snapshot(subscriptions, bytes)
            .unwrap_or_else(|| Event::UnknownBinary(bytes.to_vec()));
    }
    match parse_binary(bytes) {
        Ok(BinaryEvent::Message {
            channel,
            seq,
            payload,
        }) => {
            advance(subscriptions, channel, seq);
            Event::Binary {
                channel: channel.to_owned(),
                seq,
                payload: payload.to_vec(),
            }
        }
        Ok(BinaryEvent::Gap { channel, from, to }) => {
            advance(subscriptions, channel, to);
            Event::Gap {
                channel: channel.to_owned(),
                from,
                to,
            }
        }
        Ok(BinaryEvent::Batch { channel, entries }) => match binary_batch_entries(entries) {
            Ok(messages) => {
                if let Some(last) = messages.last() {
                    advance(subscriptions, channel, last.seq);
                }
                Event::BinaryBatch {
                    channel: channel.to_owned(),
                    messages,
                }
            }
            Err(_) => Event::UnknownBinary(bytes.to_vec()),
        },
        Err(_) => Event::UnknownBinary(bytes.to_vec()),
    }
}

fn advance(subscriptions: &mut IndexMap<String, ChannelPosition>, channel: &str, seq: u64) {
    if let Some(position) = subscriptions.get_mut(channel) {
        position.on_delivery(seq);
    }
}
