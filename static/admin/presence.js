// The live model behind the connections screen: every socket on every node,
// kept current by applying /admin/events to a snapshot of /admin/connections.
// Pure (no DOM, no fetch), so the ordering rules below are easy to reason about.
//
// Events that arrive while a snapshot is loading are buffered and replayed on
// top of it, in order. Every operation is idempotent (connect = upsert by
// socket id, disconnect = delete), so replaying an event the snapshot already
// reflects is harmless, and nothing that happened during the load is lost.

export class Presence {
  constructor() {
    this.sockets = new Map(); // socket_id → connection
    this.nodes = new Set(); // nodes known to be alive (snapshot, hello, sockets)
    this.buffer = null; // array while a snapshot is loading
  }

  /** Start buffering events: a snapshot request is about to be sent. */
  beginSnapshot() {
    this.buffer = [];
  }

  /** Install a snapshot (connections + node list), then replay what arrived meanwhile. */
  endSnapshot(connections, nodes = []) {
    this.sockets = new Map(connections.map((c) => [c.socket_id, c]));
    this.nodes = new Set(nodes.map((n) => n.node));
    const missed = this.buffer ?? [];
    this.buffer = null;
    for (const [name, data] of missed) this.apply(name, data);
  }

  /** Abandon a failed snapshot but keep the events it buffered. */
  abortSnapshot() {
    const missed = this.buffer ?? [];
    this.buffer = null;
    for (const [name, data] of missed) this.apply(name, data);
  }

  /** Apply one event from /admin/events. Returns true when the model changed. */
  apply(name, data) {
    if (this.buffer) {
      this.buffer.push([name, data]);
      return false;
    }
    switch (name) {
      case 'hello':
        if (data?.node) this.nodes.add(data.node);
        return false;
      case 'connect':
        if (!data?.socket_id) return false;
        this.sockets.set(data.socket_id, data);
        return true;
      case 'disconnect':
        return this.sockets.delete(data?.socket_id);
      case 'session_revoked':
        return this.revoked(data ?? {});
      case 'user_changed':
        return this.userChanged(data?.user);
      default:
        return false;
    }
  }

  /** session_revoked: drop the sockets of every named session (and of the user, or everyone). */
  revoked({scope, target, session_ids: ids = [], user_id: userId}) {
    const sessions = new Set(ids);
    if (scope === 'session' && target) sessions.add(target);
    return this.removeWhere(
      (c) => scope === 'all' || sessions.has(c.session_id) || (scope === 'user' && userId && c.user.id === userId),
    );
  }

  /** Drop sockets locally (after our own revoke call, in case the feed is down). */
  removeSession(sessionId) {
    return this.removeWhere((c) => c.session_id === sessionId);
  }

  removeUser(userId) {
    return this.removeWhere((c) => c.user.id === userId);
  }

  /** Replace one session's sockets with a fresh listing of it. */
  replaceSession(sessionId, connections) {
    this.removeSession(sessionId);
    for (const c of connections) this.sockets.set(c.socket_id, c);
  }

  userChanged(user) {
    if (!user?.id) return false;
    let changed = false;
    for (const c of this.sockets.values()) {
      if (c.user.id !== user.id) continue;
      c.user = {id: user.id, username: user.username, role: user.role};
      changed = true;
    }
    return changed;
  }

  removeWhere(predicate) {
    let changed = false;
    for (const [id, c] of this.sockets) {
      if (predicate(c)) {
        this.sockets.delete(id);
        changed = true;
      }
    }
    return changed;
  }

  /** Totals over everything (not the search): {sockets, users, nodes: [[node, count]…]}. */
  counts() {
    const perNode = new Map([...this.nodes].map((n) => [n, 0]));
    const users = new Set();
    for (const c of this.sockets.values()) {
      users.add(c.user.id);
      perNode.set(c.node, (perNode.get(c.node) ?? 0) + 1);
    }
    const nodes = [...perNode].sort(([a], [b]) => a.localeCompare(b));
    return {sockets: this.sockets.size, users: users.size, nodes};
  }

  /**
   * Sockets matching the search, grouped for the table:
   * [{user, sessions: [{id, device, sockets: [connection…]}…], socketCount}…],
   * users by name, sessions and sockets oldest first.
   */
  groups(query = '') {
    const q = query.trim().toLowerCase();
    const users = new Map();
    for (const c of this.sockets.values()) {
      if (q && !matches(c, q)) continue;
      let group = users.get(c.user.id);
      if (!group) users.set(c.user.id, (group = {user: c.user, sessions: new Map(), socketCount: 0}));
      let session = group.sessions.get(c.session_id);
      if (!session) group.sessions.set(c.session_id, (session = {id: c.session_id, device: c.device, sockets: []}));
      session.sockets.push(c);
      group.socketCount += 1;
    }
    const byAge = (a, b) => a.connected_at - b.connected_at;
    return [...users.values()]
      .sort((a, b) => a.user.username.localeCompare(b.user.username))
      .map((g) => {
        const sessions = [...g.sessions.values()];
        for (const s of sessions) s.sockets.sort(byAge);
        sessions.sort((a, b) => byAge(a.sockets[0], b.sockets[0]));
        return {...g, sessions};
      });
  }
}

function matches(c, q) {
  return [c.user.username, c.device, c.ip, c.node].some((v) => String(v ?? '').toLowerCase().includes(q));
}
