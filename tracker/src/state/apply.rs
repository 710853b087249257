//! [`TrackerState::apply`]: one arm per [`Command`], each a method that
//! refuses (changing nothing) or changes the state.
//!
//! Every method here is pure: no I/O, clock, randomness or argon2. A
//! refusal is checked before the first change, so a refused command leaves
//! the state exactly as it was.

use super::{
    no_such_file, no_such_group, not_member, not_owner, Account, Applied, Command, Group, Seen,
    SharedFile, TrackerState, UserSet, BAD_CREDENTIALS,
};
use imbl::OrdMap;
use proto::raft::SeenPeer;
use proto::tracker::{FileMeta, SessionToken, SharedRef};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError};
use std::sync::Arc;

impl TrackerState {
    /// Applies one command, or refuses it and changes nothing.
    ///
    /// # Errors
    /// The refusals of ARCHITECTURE.md's table, with SPEC's codes.
    pub fn apply(&mut self, cmd: Command) -> Result<Applied, WireError> {
        match cmd {
            Command::CreateUser {
                user,
                password_hash,
            } => self.create_user(user, password_hash),
            Command::StartSession { user, token } => self.start_session(user, token),
            Command::EndSession { token } => self.end_session(&token),
            Command::CreateGroup { token, group } => self.create_group(&token, group),
            Command::JoinGroup { token, group } => self.join_group(&token, &group),
            Command::LeaveGroup { token, group } => self.leave_group(&token, &group),
            Command::AcceptRequest { token, group, user } => {
                self.accept_request(&token, &group, user)
            }
            Command::RegisterFile { token, group, meta } => {
                self.register_file(&token, &group, meta)
            }
            Command::StopShare { token, group, name } => self.stop_share(&token, &group, &name),
            Command::MarkPartial { token, group, name } => self.mark_partial(&token, &group, name),
            Command::ReportCorrupt {
                token,
                group,
                name,
                holder,
            } => self.report_corrupt(&token, group, name, holder),
            Command::Presence { seen } => Ok(self.note_presence(seen)),
            Command::SetTicketSecret { secret } => Ok(self.set_ticket_secret(secret)),
            Command::Dedup {
                request,
                at_ms,
                write,
            } => self.dedup(request, at_ms, *write),
            Command::Capped { caps, write } => {
                self.check_caps(&caps, &write)?;
                self.apply(*write)
            }
            Command::Batch { writes } => Ok(self.batch(writes)),
        }
    }

    /// Each write in order, as if it were its own entry; one result each.
    fn batch(&mut self, writes: Vec<Command>) -> Applied {
        let n = writes.len();
        let results = writes.into_iter().map(|w| self.apply(w)).collect();
        Applied {
            message: format!("{n} writes applied"),
            session_changed: None,
            results,
        }
    }

    fn create_user(&mut self, user: UserId, password_hash: String) -> Result<Applied, WireError> {
        if self.users.contains_key(&user) {
            return Err(WireError::new(
                ErrorCode::UserExists,
                format!("user {user} already exists"),
            ));
        }
        let message = format!("user {user} created");
        self.users.insert(user, Account { password_hash });
        Ok(Applied::done(message))
    }

    /// Logs `user` in with `token`, ending their previous session.
    fn start_session(&mut self, user: UserId, token: SessionToken) -> Result<Applied, WireError> {
        if !self.users.contains_key(&user) {
            return Err(WireError::new(ErrorCode::BadCredentials, BAD_CREDENTIALS));
        }
        if self.sessions.contains_key(&token) {
            // 128 random bits do not collide; a replayed or forged token
            // must not hijack someone else's session.
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "session token already in use",
            ));
        }
        if let Some(old) = self.session_of.remove(&user) {
            self.sessions.remove(&old);
        }
        self.presence.remove(&user);
        self.sessions.insert(token.clone(), user.clone());
        let message = format!("logged in as {user}");
        self.session_of.insert(user.clone(), token);
        Ok(Applied {
            message,
            session_changed: Some(user),
            results: Vec::new(),
        })
    }

    fn end_session(&mut self, token: &SessionToken) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        self.sessions.remove(token);
        self.session_of.remove(&user);
        self.presence.remove(&user);
        Ok(Applied {
            message: "logged out".into(),
            session_changed: Some(user),
            results: Vec::new(),
        })
    }

    fn create_group(&mut self, token: &SessionToken, group: GroupId) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        if self.groups.contains_key(&group) {
            return Err(WireError::new(
                ErrorCode::GroupExists,
                format!("group {group} already exists"),
            ));
        }
        let message = format!("group {group} created");
        let created = Group {
            members: vec![user],
            requests: Vec::new(),
            files: OrdMap::new(),
        };
        self.groups.insert(group, created);
        Ok(Applied::done(message))
    }

    fn join_group(&mut self, token: &SessionToken, group: &GroupId) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| no_such_group(group))?;
        if g.is_member(&user) {
            return Err(WireError::new(
                ErrorCode::AlreadyMember,
                format!("you are already a member of group {group}"),
            ));
        }
        // A repeated request while one is pending is not an error.
        if !g.requests.contains(&user) {
            g.requests.push(user);
        }
        Ok(Applied::done(format!("join request sent to group {group}")))
    }

    fn leave_group(&mut self, token: &SessionToken, group: &GroupId) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| no_such_group(group))?;
        if !g.is_member(&user) {
            return Err(not_member(group));
        }
        // `retain` keeps join order, so the new members[0] is the
        // longest-standing member left: the new owner.
        g.members.retain(|m| m != &user);
        // Only the files the leaver held are touched, so a map whose nodes
        // a snapshot still shares is copied along those paths only.
        let held: Vec<FileName> = g
            .files
            .iter()
            .filter(|(_, f)| f.holders.contains(&user) || f.partial.contains(&user))
            .map(|(name, _)| name.clone())
            .collect();
        let mut delisted = Vec::new();
        for name in held {
            let Some(f) = g.files.get_mut(&name) else {
                continue;
            };
            f.holders.remove(&user);
            f.partial.remove(&user);
            if f.holders.is_empty() {
                g.files.remove(&name);
                delisted.push(name);
            }
        }
        self.suspects.clear_group(&user, group);
        for name in delisted {
            let group = group.clone();
            self.suspects.clear_file(&SharedRef { group, name });
        }
        if self.groups.get(group).is_some_and(|g| g.members.is_empty()) {
            self.groups.remove(group);
        }
        Ok(Applied::done(format!("left group {group}")))
    }

    fn accept_request(
        &mut self,
        token: &SessionToken,
        group: &GroupId,
        user: UserId,
    ) -> Result<Applied, WireError> {
        let caller = self.user_of(token)?.clone();
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| no_such_group(group))?;
        if g.owner() != &caller {
            return Err(not_owner(group));
        }
        let Some(pos) = g.requests.iter().position(|r| r == &user) else {
            return Err(WireError::new(
                ErrorCode::NoSuchRequest,
                format!("{user} has no pending request to join group {group}"),
            ));
        };
        g.requests.remove(pos);
        let message = format!("{user} is now a member of {group}");
        g.members.push(user);
        Ok(Applied::done(message))
    }

    /// Lists the file (or adds the caller as another holder of the same
    /// content); the caller stops being a partial holder.
    fn register_file(
        &mut self,
        token: &SessionToken,
        group: &GroupId,
        meta: FileMeta,
    ) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        let g = self.member_group_mut(&user, group)?;
        if !meta.is_consistent() {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the piece list of {} does not match its size of {} bytes",
                    meta.name, meta.size
                ),
            ));
        }
        let name = meta.name.clone();
        match g.files.get_mut(&name) {
            Some(f) if *f.meta != meta => {
                return Err(WireError::new(
                    ErrorCode::NameTaken,
                    format!(
                        "a different file named {name} is already shared in {group}; \
                         upload yours under another name (rename it), or, if you are \
                         the only holder of the other one, p2pctl stop_share {group} {name} first"
                    ),
                ));
            }
            Some(f) => {
                f.partial.remove(&user);
                f.holders.insert(user.clone());
            }
            None => {
                let shared = SharedFile {
                    meta: Arc::new(meta),
                    holders: UserSet::of(user.clone()),
                    partial: UserSet::default(),
                };
                g.files.insert(name.clone(), shared);
            }
        }
        // A holder re-hashes a copy reported corrupt before registering it
        // again.
        let file = SharedRef {
            group: group.clone(),
            name: name.clone(),
        };
        self.suspects.clear(&user, &file);
        Ok(Applied::done(format!("{name} shared in {group}")))
    }

    fn stop_share(
        &mut self,
        token: &SessionToken,
        group: &GroupId,
        name: &FileName,
    ) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        let g = self.member_group_mut(&user, group)?;
        let f = g
            .files
            .get_mut(name)
            .ok_or_else(|| no_such_file(group, name))?;
        let was_holder = f.holders.remove(&user);
        let was_partial = f.partial.remove(&user);
        if !was_holder && !was_partial {
            return Err(WireError::new(
                ErrorCode::NotHolder,
                format!("you are not sharing {name} in {group}"),
            ));
        }
        let delisted = f.holders.is_empty();
        if delisted {
            g.files.remove(name);
        }
        let file = SharedRef {
            group: group.clone(),
            name: name.clone(),
        };
        match delisted {
            true => self.suspects.clear_file(&file),
            false => self.suspects.clear(&user, &file),
        }
        Ok(Applied::done(format!("stopped sharing {name} in {group}")))
    }

    /// Unlists `holder`'s copy of `name` until it registers it again.
    /// Marking a copy already marked is accepted and changes nothing.
    fn report_corrupt(
        &mut self,
        token: &SessionToken,
        group: GroupId,
        name: FileName,
        holder: UserId,
    ) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        let f = self.member_file(&user, &group, &name)?;
        if holder == user || !(f.holders.contains(&holder) || f.partial.contains(&holder)) {
            return Err(WireError::new(
                ErrorCode::NotHolder,
                format!("{holder} does not share {name} in {group}"),
            ));
        }
        let message = format!("{holder}'s copy of {name} is no longer listed in {group}");
        self.suspects.mark(holder, SharedRef { group, name });
        Ok(Applied::done(message))
    }

    /// The caller serves verified pieces of `name` while downloading it.
    fn mark_partial(
        &mut self,
        token: &SessionToken,
        group: &GroupId,
        name: FileName,
    ) -> Result<Applied, WireError> {
        let user = self.user_of(token)?.clone();
        let g = self.member_group_mut(&user, group)?;
        let f = g
            .files
            .get_mut(&name)
            .ok_or_else(|| no_such_file(group, &name))?;
        // A complete holder already serves every piece.
        if !f.holders.contains(&user) {
            f.partial.insert(user);
        }
        Ok(Applied::done(format!(
            "serving verified pieces of {name} in {group}"
        )))
    }

    /// Records heartbeats: per user, the newest stamp of their live session.
    fn note_presence(&mut self, seen: Vec<SeenPeer>) -> Applied {
        for s in seen {
            // A heartbeat of an ended session (it raced with a logout or a
            // login elsewhere) is stale: ignore it.
            if self.session_of.get(&s.user) != Some(&s.token) {
                continue;
            }
            let newer = self
                .presence
                .get(&s.user)
                .is_none_or(|old| old.token != s.token || old.at_ms <= s.at_ms);
            if newer {
                let seen = Seen {
                    token: s.token,
                    addr: s.addr,
                    at_ms: s.at_ms,
                    key: s.key,
                };
                self.presence.insert(s.user, seen);
            }
        }
        Applied::done("presence noted")
    }

    /// Installs the ticket key unless one is set: accepted either way.
    fn set_ticket_secret(&mut self, secret: String) -> Applied {
        if self.ticket_secret.is_none() {
            self.ticket_secret = Some(secret);
        }
        Applied::done("ticket key set")
    }
}
