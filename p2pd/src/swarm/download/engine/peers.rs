//! The download's side of its peer connections: their events, keeping
//! their request pipelines full, received blocks, and the verifier's
//! verdicts on complete pieces.

use super::{
    internal, Swarm, MAX_VERIFY_QUEUE, RETRY_AFTER_BAN, RETRY_AFTER_CLOSE, RETRY_AFTER_STALL,
};
use crate::swarm::download::error::DownloadError;
use crate::swarm::peer_conn::{Out, PeerEvent, PeerMsg};
use crate::swarm::picker::{pick_blocks, pipeline_depth, LiveView};
use crate::swarm::pieces::{BlockOutcome, PeerId, PieceError, PieceStatus};
use crate::swarm::wire::ConnError;
use proto::geometry;
use proto::peer::{Bitfield, BlockRef, RefusalReason, PIECE_DATA_START};
use std::time::{Duration, Instant};

impl Swarm<'_> {
    pub(super) fn on_peer(&mut self, m: PeerMsg) -> Result<(), DownloadError> {
        let peer = m.peer;
        if !self.book.is_current(peer, m.conn) {
            return Ok(()); // a late event of an earlier connection
        }
        match m.event {
            PeerEvent::Ready(bits) => self.on_ready(peer, &bits),
            PeerEvent::Have(i) => self.on_have(peer, i),
            PeerEvent::Reject(b) => self.on_reject(peer, b),
            PeerEvent::Fetchers(users) => self.on_fetchers(&users),
            PeerEvent::Block {
                piece,
                offset,
                payload,
            } => self.on_block(peer, piece, offset, payload)?,
            PeerEvent::Closed(e) => {
                if let ConnError::Rejected(r) = &e {
                    if r.reason == RefusalReason::Ticket {
                        self.ticket.ticket = None; // the tracker forgot it (restart)
                    }
                }
                if let Some(user) = self.book.user_of(peer) {
                    tracing::info!(%user, name = %self.job.target.name, "peer lost: {e}");
                }
                self.drop_peer(peer, "", RETRY_AFTER_CLOSE);
            }
        }
        Ok(())
    }

    pub(super) fn on_ready(&mut self, peer: PeerId, bits: &[u8]) {
        match Bitfield::from_bytes(bits, self.pieces.piece_count()) {
            Ok(bf) => {
                self.avail.add_peer(&bf);
                if let Some(slot) = self.book.get_mut(peer) {
                    slot.bitfield = Some(bf);
                    slot.last_block = Instant::now();
                    // What we already hold (a resumed download, or pieces
                    // from others), so that a seeder steering a crowd knows
                    // it; new pieces follow from `on_verified`.
                    if let Some(conn) = &slot.conn {
                        for p in self.pieces.have().ones() {
                            let _ = conn.tx.send(Out::Have(p));
                        }
                    }
                }
                self.top_up(peer);
                self.publish();
            }
            Err(e) => self.drop_peer(peer, &format!("bad bitfield: {e}"), RETRY_AFTER_STALL),
        }
    }

    /// A server named the others fetching this file from it: our sources
    /// are shared, so spread our picks over the whole file (different
    /// downloaders then take different pieces from the same source), and
    /// look for the others at the tracker now rather than at the next
    /// regular look.
    pub(super) fn on_fetchers(&mut self, users: &[proto::UserId]) {
        if users.is_empty() {
            return;
        }
        if !self.spread {
            tracing::debug!(name = %self.job.target.name, others = users.len(),
                "a source serves others too: spreading picks over the whole file");
            self.spread = true;
        }
        let now = Instant::now();
        if self.book.hint(users, self.job.client.user(), now) > 0 {
            self.locate_for_hints(now);
        }
    }

    pub(super) fn on_have(&mut self, peer: PeerId, piece: u32) {
        if piece >= self.pieces.piece_count() {
            self.drop_peer(peer, "announced a piece past the end", RETRY_AFTER_STALL);
            return;
        }
        let bf = self.book.get_mut(peer).and_then(|s| s.bitfield.as_mut());
        if bf.is_some_and(|bf| bf.set(piece) == Ok(true)) {
            self.avail.add_have(piece);
        }
        self.top_up(peer);
    }

    pub(super) fn on_reject(&mut self, peer: PeerId, b: BlockRef) {
        if let Some(block) = geometry::block_index(b.offset) {
            self.pieces.release_block(peer, b.piece, block);
        }
        // It does not have the piece (any more): stop asking it.
        let bf = self.book.get_mut(peer).and_then(|s| s.bitfield.as_mut());
        if bf.is_some_and(|bf| bf.unset(b.piece)) {
            self.avail.remove_have(b.piece);
        }
        self.top_up(peer);
        self.top_up_all();
    }

    /// Ends `peer`'s connection (if any), releases its requests and gives
    /// them to the others.
    pub(super) fn drop_peer(&mut self, peer: PeerId, why: &str, retry: Duration) {
        if !why.is_empty() {
            if let Some(user) = self.book.user_of(peer) {
                tracing::info!(%user, name = %self.job.target.name, "dropping peer: {why}");
            }
        }
        if let Some(bf) = self.book.detach(peer, retry, Instant::now()) {
            self.avail.remove_peer(&bf);
        }
        self.pieces.release_peer(peer);
        self.top_up_all();
        self.publish();
    }

    /// One line per housekeeping tick at trace level: per peer, the
    /// pieces it has, how many of those we lack, how many of those nobody
    /// is fetching, and our requests outstanding there. A peer that has
    /// pieces we lack and no requests from us is a stall to look into.
    pub(super) fn trace_peers(&mut self) {
        let have = self.pieces.have();
        let peers: Vec<String> = self
            .book
            .ready()
            .into_iter()
            .filter_map(|id| {
                let slot = self.book.get(id)?;
                let bf = slot.bitfield.as_ref()?;
                let lack = bf.ones().filter(|&p| !have.has(p)).count();
                let free = bf
                    .ones()
                    .filter(|&p| self.pieces.status(p) == Some(PieceStatus::Wanted))
                    .count();
                Some(format!(
                    "{}:has={},lack={lack},free={free},out={}",
                    slot.user,
                    bf.count(),
                    self.pieces.peer_outstanding(id)
                ))
            })
            .collect();
        let have = have.count();
        let hash_lags = self.gate.lags();
        tracing::trace!(name = %self.job.target.name, have, verifying = self.verifying,
            hash_lags, "peers: {}", peers.join(" "));
    }

    pub(super) fn top_up_all(&mut self) {
        for id in self.book.ready() {
            self.top_up(id);
        }
    }

    /// Fill `peer`'s pipeline up to its share of the download's budget
    /// ([`pipeline_depth`]).
    pub(super) fn top_up(&mut self, peer: PeerId) {
        if self.verifying >= MAX_VERIFY_QUEUE {
            return; // resumed when a verdict comes back
        }
        if self.gate.lags() {
            return; // resumed as the hash catches up
        }
        let depth = pipeline_depth(self.book.ready_count());
        let Some(slot) = self.book.get_mut(peer) else {
            return;
        };
        let (Some(conn), Some(bf)) = (&slot.conn, &slot.bitfield) else {
            return;
        };
        let outstanding = self.pieces.peer_outstanding(peer);
        let max = depth.saturating_sub(outstanding);
        if max == 0 {
            return;
        }
        self.picks.clear();
        let view = LiveView {
            pieces: &self.pieces,
            peer,
            peer_has: bf,
            availability: &self.avail,
            spread: self.spread,
        };
        pick_blocks(&view, &mut self.rng, max, &mut self.picks);
        if outstanding == 0 && !self.picks.is_empty() {
            slot.last_block = Instant::now();
        }
        for pick in &self.picks {
            match self.pieces.reserve_block(peer, pick.piece, pick.block) {
                Ok(b) => {
                    if conn.tx.send(Out::Request(b)).is_err() {
                        self.pieces.release_block(peer, pick.piece, pick.block);
                    }
                }
                Err(e) => tracing::debug!("picker chose an unusable block: {e}"),
            }
        }
    }

    pub(super) fn on_block(
        &mut self,
        peer: PeerId,
        piece: u32,
        offset: u32,
        payload: Vec<u8>,
    ) -> Result<(), DownloadError> {
        let len = (payload.len() - PIECE_DATA_START) as u32;
        match self.pieces.block_received(peer, piece, offset, len) {
            // Released or cancelled meanwhile.
            Err(PieceError::NotRequested { .. }) => self.pool.put(payload),
            Err(e) => {
                self.drop_peer(peer, &format!("sent a bad block: {e}"), RETRY_AFTER_STALL);
                return Ok(());
            }
            Ok(BlockOutcome::Duplicate) => self.pool.put(payload),
            Ok(BlockOutcome::Accepted {
                cancel,
                piece_complete,
            }) => {
                let b = BlockRef { piece, offset, len };
                for &c in &cancel {
                    if let Some(conn) = self.book.get(c).and_then(|s| s.conn.as_ref()) {
                        let _ = conn.tx.send(Out::Cancel(b));
                    }
                }
                self.received += u64::from(len);
                if let Some(s) = self.book.get_mut(peer) {
                    s.last_block = Instant::now();
                }
                let block = geometry::block_index(offset).unwrap_or(u32::MAX);
                let blocks = self.pieces.blocks_of(piece);
                self.assembly.insert(piece, block, blocks, payload);
                if piece_complete {
                    self.submit_piece(piece)?;
                }
                for c in cancel {
                    self.top_up(c);
                }
            }
        }
        self.top_up(peer);
        Ok(())
    }

    /// Hands a complete piece to the verifier; the verdict comes back as
    /// a [`JobEvent::Verified`].
    pub(super) fn submit_piece(&mut self, piece: u32) -> Result<(), DownloadError> {
        let (Some(&expected), Some(blocks)) = (
            self.meta.pieces.get(piece as usize),
            self.assembly.take(piece),
        ) else {
            return Err(internal(
                "verifying",
                format!("piece {piece} complete but its blocks are missing"),
            ));
        };
        if !self.verifier.submit(piece, expected, blocks) {
            return Err(internal("verifying", "the piece verifier stopped"));
        }
        self.verifying += 1;
        Ok(())
    }

    pub(super) fn on_verified(&mut self, piece: u32) {
        if let Err(e) = self.pieces.mark_verified(piece) {
            tracing::warn!("verified piece {piece}: {e}");
        }
        self.saver.mark_dirty();
        self.gate.advance(self.pieces.have());
        self.have_tx.send_replace(self.pieces.have().clone());
        // Our sources hear of it too: a seeder steering a crowd shows us a
        // new piece for each one we hold (see `steering`).
        for conn in self.book.conns() {
            let _ = conn.tx.send(Out::Have(piece));
        }
        self.mark_partial();
    }

    /// A corrupt piece: fetched again elsewhere; its contributors blamed.
    pub(super) fn on_corrupt(&mut self, piece: u32) {
        let culprits = self.pieces.mark_corrupt(piece).unwrap_or_default();
        self.assembly.discard(piece);
        for b in self.book.blame(&culprits) {
            let name = &self.job.target.name;
            if b.banned {
                tracing::warn!(user = %b.user, %name, piece,
                    "peer sent a corrupt piece; dropped for this download");
                self.drop_peer(b.peer, "", RETRY_AFTER_BAN);
                if b.newly {
                    self.report_corrupt(b.user);
                }
            } else {
                tracing::warn!(user = %b.user, %name, piece,
                    "a corrupt piece had blocks from this peer and others");
            }
        }
    }
}
