//! Cycles: Tarjan's strongly connected components, then in each component the shortest cycle
//! of the most specific class, tried in Elle's order: `ww` only (G0), `ww`+`wr` (G1c), exactly
//! one `rw` (G-single), any (G2); first without real-time edges (a serializability violation),
//! then with them (the class gets `-realtime`: a violation of strict serializability only).
//! Searches are breadth-first, from a bounded number of starting points per component.

use std::collections::{HashMap, VecDeque};

use super::graph::{Graph, Kind};

/// Starting transactions tried per search in one component.
const MAX_STARTS: usize = 32;
/// `rw` edges tried as the one `rw` edge of a G-single cycle, per component.
const MAX_RW: usize = 128;

/// A cycle: its class and its edges in order (each edge's `to` is the next edge's `from`).
pub(super) struct Cycle {
    pub class: String,
    pub edges: Vec<usize>,
}

/// One cycle for each of at most `max` strongly connected components.
pub(super) fn find(g: &Graph, max: usize) -> Vec<Cycle> {
    let (comp, comps) = tarjan(g);
    comps
        .iter()
        .enumerate()
        .filter(|(_, members)| members.len() > 1)
        .take(max)
        .filter_map(|(c, members)| shortest(g, &comp, c, members))
        .collect()
}

/// The class of a cycle from its edges.
pub(super) fn classify(g: &Graph, edges: &[usize]) -> String {
    let count = |k: Kind| edges.iter().filter(|&&e| g.edges[e].kind == k).count();
    let base = match count(Kind::Rw) {
        0 if count(Kind::Wr) > 0 => "G1c",
        0 => "G0",
        1 => "G-single",
        _ => "G2",
    };
    if count(Kind::Rt) > 0 {
        format!("{base}-realtime")
    } else {
        base.to_owned()
    }
}

fn shortest(g: &Graph, comp: &[usize], c: usize, members: &[usize]) -> Option<Cycle> {
    for realtime in [false, true] {
        let rt = move |k: Kind| realtime && k == Kind::Rt;
        let searches: [&dyn Fn(Kind) -> bool; 2] = [&|k| k == Kind::Ww || rt(k), &|k| {
            k == Kind::Ww || k == Kind::Wr || rt(k)
        }];
        for allow in searches {
            if let Some(edges) = shortest_cycle(g, comp, c, members, allow) {
                return Some(Cycle {
                    class: classify(g, &edges),
                    edges,
                });
            }
        }
        // G-single: one rw edge, closed by a path without rw.
        let mut best: Option<Vec<usize>> = None;
        let rws = members
            .iter()
            .flat_map(|&m| g.out[m].iter().copied())
            .filter(|&e| g.edges[e].kind == Kind::Rw && comp[g.edges[e].to] == c)
            .take(MAX_RW);
        for e in rws {
            let edge = g.edges[e];
            let allow = |k: Kind| k == Kind::Ww || k == Kind::Wr || rt(k);
            if let Some(path) = path(g, comp, c, edge.to, edge.from, &allow) {
                if best.as_ref().is_none_or(|b| path.len() + 1 < b.len()) {
                    let mut cycle = vec![e];
                    cycle.extend(path);
                    best = Some(cycle);
                }
            }
        }
        if let Some(edges) = best {
            return Some(Cycle {
                class: classify(g, &edges),
                edges,
            });
        }
        let all = |k: Kind| k != Kind::Rt || realtime;
        if let Some(edges) = shortest_cycle(g, comp, c, members, &all) {
            return Some(Cycle {
                class: classify(g, &edges),
                edges,
            });
        }
    }
    None
}

/// The shortest cycle through any of the first [`MAX_STARTS`] members, with edges `allow`s.
fn shortest_cycle(
    g: &Graph,
    comp: &[usize],
    c: usize,
    members: &[usize],
    allow: &dyn Fn(Kind) -> bool,
) -> Option<Vec<usize>> {
    let mut best: Option<Vec<usize>> = None;
    for &s in members.iter().take(MAX_STARTS) {
        if let Some(p) = path(g, comp, c, s, s, allow) {
            if best.as_ref().is_none_or(|b| p.len() < b.len()) {
                best = Some(p);
            }
        }
    }
    best
}

/// The shortest path (edge indexes) from `from` to `to` (a cycle when they are equal) within
/// component `c`, over edges whose kind `allow`s.
fn path(
    g: &Graph,
    comp: &[usize],
    c: usize,
    from: usize,
    to: usize,
    allow: &dyn Fn(Kind) -> bool,
) -> Option<Vec<usize>> {
    // Node → the edge it was reached by.
    let mut via: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(n) = queue.pop_front() {
        for &e in &g.out[n] {
            let edge = g.edges[e];
            if !allow(edge.kind) || comp[edge.to] != c {
                continue;
            }
            if edge.to == to {
                let mut edges = vec![e];
                let mut at = n;
                while at != from {
                    let back = via[&at];
                    edges.push(back);
                    at = g.edges[back].from;
                }
                edges.reverse();
                return Some(edges);
            }
            if edge.to != from && !via.contains_key(&edge.to) {
                via.insert(edge.to, e);
                queue.push_back(edge.to);
            }
        }
    }
    None
}

/// Tarjan's algorithm without recursion: component id of every node (`usize::MAX` for
/// non-nodes) and the members of each component.
fn tarjan(g: &Graph) -> (Vec<usize>, Vec<Vec<usize>>) {
    let n = g.out.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![usize::MAX; n];
    let mut comps: Vec<Vec<usize>> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0usize;
    for root in 0..n {
        if !g.nodes[root] || index[root] != usize::MAX {
            continue;
        }
        // (node, position in its out-edges).
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if let Some(&e) = g.out[v].get(*i) {
                *i += 1;
                let w = g.edges[e].to;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let id = comps.len();
                let mut members = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = id;
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                members.sort_unstable();
                comps.push(members);
            }
        }
    }
    (comp, comps)
}
