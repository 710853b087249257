//! The download's side of the tracker: locating holders, tickets,
//! announcing a partial holding, and dialling the holders it learns of.

use super::{JobEvent, Swarm, Ticket, MAX_PEERS_PER_DOWNLOAD};
use crate::swarm::download::error::DownloadError;
use crate::swarm::download::peer_book::Conn;
use crate::swarm::peer_conn::{self, Dial, Out};
use crate::swarm::pieces::PeerId;
use crate::tracker_client::Located;
use proto::peer::{Handshake, PEER_PROTOCOL_VERSION};
use proto::tracker::PeerEntry;
use proto::{UserId, WireError};
use std::time::Instant;
use tokio::sync::mpsc;

impl Swarm<'_> {
    /// Asks the tracker for holders (and a ticket if `want_ticket`) in the
    /// background; the answer comes back as [`JobEvent::Located`].
    pub(super) fn start_locate(&mut self, want_ticket: bool) {
        if self.locating {
            return;
        }
        self.locating = true;
        self.last_locate = Instant::now();
        let client = self.job.client.clone();
        let (group, name) = (self.job.target.group.clone(), self.job.target.name.clone());
        let tx = self.job_tx.clone();
        let stop = self.conns.clone();
        self.job.ctx.tasks.spawn(async move {
            let located = async {
                let l = client.locate(group.clone(), name.clone()).await?;
                let ticket = match want_ticket && !l.peers.is_empty() {
                    true => Some(client.issue_ticket(group, name).await?),
                    false => None,
                };
                Ok((l, ticket))
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                r = located => { let _ = tx.send(JobEvent::Located(r)); }
            }
        });
    }

    /// Asks the tracker again if servers named fetchers it has not listed
    /// yet (see `peer_book`'s hints); at most every `HINT_LOCATE_INTERVAL`.
    pub(super) fn locate_for_hints(&mut self, now: Instant) {
        if !self.locating && self.book.hints_due(now, self.last_locate) {
            self.start_locate(self.ticket.ticket.is_none());
        }
    }

    pub(super) fn mark_partial(&mut self) {
        if self.marked_partial {
            return;
        }
        self.marked_partial = true;
        let client = self.job.client.clone();
        let (group, name) = (self.job.target.group.clone(), self.job.target.name.clone());
        self.job.ctx.tasks.spawn(async move {
            if let Err(e) = client.mark_partial(group, name).await {
                tracing::debug!("mark_partial: {e}");
            }
        });
    }

    /// Tells the tracker that `holder` sent data failing its SHA-1, so it
    /// stops listing that copy for everyone until the holder re-hashes it.
    pub(super) fn report_corrupt(&mut self, holder: UserId) {
        let client = self.job.client.clone();
        let (group, name) = (self.job.target.group.clone(), self.job.target.name.clone());
        self.job.ctx.tasks.spawn(async move {
            match client
                .report_corrupt(group, name.clone(), holder.clone())
                .await
            {
                Ok(()) => {
                    tracing::info!(%holder, %name, "reported the corrupt copy to the tracker")
                }
                Err(e) => tracing::debug!(%holder, %name, "report_corrupt: {e}"),
            }
        });
    }

    pub(super) fn on_located(
        &mut self,
        r: Result<(Located, Option<String>), WireError>,
    ) -> Result<(), DownloadError> {
        self.locating = false;
        let (located, ticket) = match r.map_err(DownloadError::from) {
            Ok(l) => l,
            Err(e) if e.is_permanent() && self.book.connected() == 0 => return Err(e),
            // Every holder stopped sharing it (one whose copy proved
            // corrupt, say): wait for someone to share it again, as
            // `why_idle` then says.
            Err(e) if e.is_unknown_file() => {
                tracing::debug!(name = %self.job.target.name, "locate: {e}");
                self.book.learn_delisted();
                // Whoever shares it next lists it afresh, without us.
                self.marked_partial = false;
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(name = %self.job.target.name, "locate: {e}");
                return Ok(());
            }
        };
        if located.meta.sha1 != self.meta.sha1 {
            tracing::warn!(name = %self.job.target.name,
                "the tracker now lists other content under this name; ignoring its holders");
            return Ok(());
        }
        if let Some(t) = ticket {
            // Open connections go on only with the fresh ticket.
            let fresh: std::sync::Arc<str> = t.as_str().into();
            for conn in self.book.conns() {
                let _ = conn.tx.send(Out::Ticket(fresh.clone()));
            }
            self.ticket = Ticket {
                ticket: Some(t),
                at: Instant::now(),
            };
        }
        self.learn_peers(located.peers);
        Ok(())
    }

    /// Learn who is online, then dial whoever is due.
    pub(super) fn learn_peers(&mut self, peers: Vec<PeerEntry>) {
        self.book
            .learn(peers, self.job.client.user(), Instant::now());
        self.dial_due();
    }

    pub(super) fn dial_due(&mut self) {
        let Some(ticket) = self.ticket.ticket.clone() else {
            // Connect once a ticket arrives.
            if self.book.any_online() {
                self.start_locate(true);
            }
            return;
        };
        for id in self.book.due(Instant::now(), MAX_PEERS_PER_DOWNLOAD) {
            self.dial(id, ticket.clone());
        }
    }

    pub(super) fn dial(&mut self, peer: PeerId, ticket: String) {
        let Some((addr, key)) = self.book.get(peer).map(|s| (s.addr, s.key)) else {
            return;
        };
        self.conn_seq += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = self.conns.child_token();
        let t = &self.job.target;
        let dial = Dial {
            addr,
            key,
            endpoint: self.job.ctx.endpoint.clone(),
            handshake: Handshake {
                version: PEER_PROTOCOL_VERSION,
                group: t.group.clone(),
                name: t.name.clone(),
                sha1: self.meta.sha1,
                ticket,
                user: self.job.client.user().clone(),
                crowd: true,
            },
            peer,
            conn: self.conn_seq,
            events: self.peer_tx.clone(),
            out: rx,
            limiter: self.job.ctx.download_limit.clone(),
            stop: stop.clone(),
            pool: self.pool.clone(),
        };
        let conn = Conn {
            no: self.conn_seq,
            tx,
            stop,
        };
        self.book.attach(peer, conn, Instant::now());
        self.job.ctx.tasks.spawn(peer_conn::run(dial));
    }
}
