//! The encodings of a [`RangeDescriptor`] (a data group's `descriptor`) and a [`RoutingTable`]
//! (group 0's `routing`), docs/encoding.md and docs/sharding.md §7. Decoding refuses a value
//! that breaks the rules of `routing.rs`, naming the range and the rule.

use super::{DecodeError, EncodeError, Reader, Writer};
use crate::routing::{RangeDescriptor, RoutingTable};

/// `FORMAT_V1 ‖ descriptor`.
pub fn encode_descriptor(d: &RangeDescriptor) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new("descriptor");
    put_descriptor(&mut w, d)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_descriptor`].
pub fn decode_descriptor(bytes: &[u8]) -> Result<RangeDescriptor, DecodeError> {
    Reader::whole("descriptor", bytes, read_descriptor)
}

/// `FORMAT_V1 ‖ routing`.
pub fn encode_routing(table: &RoutingTable) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new("routing table");
    put_routing(&mut w, table)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_routing`].
pub fn decode_routing(bytes: &[u8]) -> Result<RoutingTable, DecodeError> {
    Reader::whole("routing table", bytes, read_routing)
}

/// Writes the descriptor body (no version byte):
/// `be64 group ‖ bytes start ‖ opt_bytes end ‖ be64 epoch ‖ count v ‖ v × be64 voter`.
pub fn put_descriptor(w: &mut Writer, d: &RangeDescriptor) -> Result<(), EncodeError> {
    w.u64(d.group);
    w.bytes("start", &d.start)?;
    w.flag(d.end.is_some());
    if let Some(end) = &d.end {
        w.bytes("end", end)?;
    }
    w.u64(d.epoch);
    w.count("voters", d.voters.len())?;
    for voter in &d.voters {
        w.u64(*voter);
    }
    Ok(())
}

/// Reads a descriptor body written by [`put_descriptor`] and checks it
/// ([`RangeDescriptor::check`]).
pub fn read_descriptor(r: &mut Reader<'_>) -> Result<RangeDescriptor, DecodeError> {
    let d = read_descriptor_fields(r)?;
    d.check().map_err(|problem| r.invalid(problem))?;
    Ok(d)
}

/// The fields of a descriptor, unchecked: the table checks its ranges with their positions.
fn read_descriptor_fields(r: &mut Reader<'_>) -> Result<RangeDescriptor, DecodeError> {
    let group = r.u64("group")?;
    let start = r.bytes("start")?;
    let end = if r.flag("end presence flag")? {
        Some(r.bytes("end")?)
    } else {
        None
    };
    let epoch = r.u64("epoch")?;
    // No capacity from the count: a corrupt count must not allocate before it is read.
    let mut voters = Vec::new();
    for _ in 0..r.count("voters")? {
        voters.push(r.u64("voter")?);
    }
    Ok(RangeDescriptor {
        group,
        start,
        end,
        epoch,
        voters,
    })
}

/// Writes the routing table body (no version byte): `count n ‖ n × descriptor`.
pub fn put_routing(w: &mut Writer, table: &RoutingTable) -> Result<(), EncodeError> {
    w.count("ranges", table.ranges().len())?;
    for d in table.ranges() {
        put_descriptor(w, d)?;
    }
    Ok(())
}

/// Reads a routing table body written by [`put_routing`] and checks every rule
/// ([`RoutingTable::new`]).
pub fn read_routing(r: &mut Reader<'_>) -> Result<RoutingTable, DecodeError> {
    let mut ranges = Vec::new();
    for _ in 0..r.count("ranges")? {
        ranges.push(read_descriptor_fields(r)?);
    }
    RoutingTable::new(ranges).map_err(|problem| r.invalid(problem))
}
